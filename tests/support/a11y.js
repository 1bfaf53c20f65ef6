// An in-page WCAG AA check, evaluated through the DevTools protocol (tests/support/browser.py
// `a11y_problems`): returns a list of problems, empty when the page passes.
(() => {
  const problems = [];
  const parse = (c) => {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const lum = (c) => {
    const ch = [c.r, c.g, c.b].map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2];
  };
  const ratio = (a, b) => {
    const x = lum(a), y = lum(b);
    return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.5) return c;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  const visible = (el) => {
    const s = getComputedStyle(el);
    if (s.visibility === "hidden" || s.display === "none") return false;
    const r = el.getBoundingClientRect();
    return r.width > 1 && r.height > 1 && r.bottom > 0;
  };
  const describe = (el) =>
    el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\s+/).join(".") : "") +
    ' "' + (el.textContent || "").trim().slice(0, 40) + '"';

  // Text contrast: every visible element with its own text.
  for (const el of document.querySelectorAll("body *")) {
    if (!visible(el)) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const s = getComputedStyle(el);
    const fg = parse(s.color);
    const size = parseFloat(s.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
    const need = large ? 3 : 4.5;
    const got = ratio(fg, background(el));
    if (got < need) problems.push(`text contrast ${got.toFixed(2)} < ${need}: ${describe(el)}`);
  }
  // Controls: a visible boundary of 3:1 against what is around them.
  const controls = "button, a.button, input:not([type=hidden]):not([type=checkbox]), select, textarea";
  for (const el of document.querySelectorAll(controls)) {
    if (!visible(el)) continue;
    const s = getComputedStyle(el);
    const around = background(el.parentElement);
    const border = parseFloat(s.borderTopWidth) > 0 ? parse(s.borderTopColor) : null;
    const fill = parse(s.backgroundColor);
    const best = Math.max(
      border ? ratio(border, around) : 0,
      fill && fill.a > 0.5 ? ratio(fill, around) : 0,
    );
    if (best < 3) problems.push(`control boundary ${best.toFixed(2)} < 3: ${describe(el)}`);
  }
  // Accessible names, and no two different actions under one name.
  const nameOf = (el) => {
    if (el.getAttribute("aria-label")) return el.getAttribute("aria-label").trim();
    const by = el.getAttribute("aria-labelledby");
    if (by) return by.split(/\s+/).map((i) => (document.getElementById(i) || {}).textContent || "").join(" ").trim();
    if (el.id) {
      const label = document.querySelector(`label[for="${CSS.escape(el.id)}"]`);
      if (label) return label.textContent.trim();
    }
    const wrap = el.closest("label");
    if (wrap) return wrap.textContent.trim();
    if (["input", "select", "textarea"].includes(el.tagName.toLowerCase())) return "";
    return (el.textContent || "").trim();
  };
  const seen = new Map();
  for (const el of document.querySelectorAll("a[href], button, input:not([type=hidden]), select, textarea")) {
    const name = nameOf(el);
    if (!name) { problems.push(`no accessible name: ${describe(el)}`); continue; }
    const tag = el.tagName.toLowerCase();
    if (tag !== "button" && tag !== "a") continue;
    const form = el.closest("form");
    const target = tag === "a" ? el.getAttribute("href") :
      (form ? form.getAttribute("action") + "?" + [...form.querySelectorAll("input[type=hidden]:not([name=csrf])")].map((i) => i.name + "=" + i.value).join("&") : "");
    const key = name.toLowerCase();
    if (seen.has(key) && seen.get(key) !== target) {
      problems.push(`"${name}" names two different actions (${seen.get(key)} and ${target})`);
    }
    seen.set(key, target);
  }
  return problems;
})()
