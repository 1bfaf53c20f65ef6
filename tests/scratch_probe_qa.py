import redis

from tests.support.stack import Stack


def test_probe(stack: Stack, valkey) -> None:
    r = redis.Redis.from_url(valkey.connection_url, decode_responses=True)
    with stack.client("t3") as api:
        s = api.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/never", "filter": {"providers": ["no-such-provider"]}}).json()
        print(s)
        print(r.hgetall(f"relay:sub:{s['id']}"))
        print(api.patch(f"/v1/subscriptions/{s['id']}", json={"unknown": 1}).text)
        print(r.hgetall(f"relay:sub:{s['id']}"))
        print(api.get(f"/v1/subscriptions/{s['id']}").text)
