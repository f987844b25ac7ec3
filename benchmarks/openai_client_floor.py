"""The official openai client's own cost per request against the fake server (its own process): the floor under
`linebench eval --backend openai`'s per-row overhead.

    python benchmarks/openai_client_floor.py
"""
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_openai import Behaviour, FakeServer  # noqa: E402
def serve(conn):
    s = FakeServer({}, Behaviour()).start(); conn.send(s.url); s.thread.join()
if __name__ == "__main__":
    a, b = mp.Pipe(); p = mp.get_context("fork").Process(target=serve, args=(b,), daemon=True); p.start(); url = a.recv()
    import openai, base64, os
    png = os.urandom(15000)
    msgs = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}}, {"type": "text", "text": "q"}]}]
    c = openai.OpenAI(base_url=url, api_key="x")
    for mode in ("parsed", "raw"):
        for _ in range(20):
            c.chat.completions.create(model="m", messages=msgs, max_tokens=8)
        t, cpu = time.perf_counter(), time.process_time()
        for _ in range(300):
            if mode == "parsed":
                r = c.chat.completions.create(model="m", messages=msgs, max_tokens=8); r.choices[0].message.content
            else:
                r = c.chat.completions.with_raw_response.create(model="m", messages=msgs, max_tokens=8); json.loads(r.http_response.text)["choices"][0]["message"]["content"]
        print(mode, "wall ms", round((time.perf_counter()-t)/300*1e3, 2), "client cpu ms", round((time.process_time()-cpu)/300*1e3, 2))
    p.terminate()
