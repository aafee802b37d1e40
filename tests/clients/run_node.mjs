// @stable-canvas/comfyui-client (npm, pinned in package-lock.json) against comfy-warden,
// unchanged: alice with an API token as Bearer (fetch) and on the WebSocket, uploads, runs a
// workflow, waits for it over the WebSocket, downloads; bob (his own token) sees none of it.
// Run by tests/clients.rs; exits non-zero on the first failure.
import { Client } from "@stable-canvas/comfyui-client";
import WebSocket from "ws";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";

const host = process.env.WARDEN_HOST;
const png = readFileSync(process.env.CAT_PNG);

function client(token) {
  const authFetch = (url, init = {}) => {
    const headers = new Headers(init.headers || {});
    headers.set("authorization", `Bearer ${token}`);
    return fetch(url, { ...init, headers });
  };
  class AuthWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { headers: { authorization: `Bearer ${token}` } });
    }
  }
  const c = new Client({ api_host: host, ssl: false, fetch: authFetch, WebSocket: AuthWebSocket });
  return { c, authFetch };
}

const alice = client(process.env.ALICE_TOKEN);
const bob = client(process.env.BOB_TOKEN);
alice.c.connect();

const form = new FormData();
form.append("image", new Blob([png], { type: "image/png" }), "node-cat.png");
const up = await alice.c.fetchApi("/upload/image", { method: "POST", body: form });
assert.equal(up.status, 200, await up.clone().text());
const { name, subfolder } = await up.json();
const image = subfolder ? `${subfolder}/${name}` : name;

const out = await alice.c.enqueue(
  {
    1: { class_type: "LoadImage", inputs: { image } },
    2: { class_type: "ImageInvert", inputs: { image: ["1", 0] } },
    3: { class_type: "SaveImage", inputs: { filename_prefix: "stable-canvas", images: ["2", 0] } },
  },
  { disable_random_seed: true, timeout_ms: 30000 },
);
assert.ok(out.images.length >= 1, JSON.stringify(out));
const first = out.images[0];
let bytes;
if (first.type === "url") {
  const r = await alice.authFetch(first.data);
  assert.equal(r.status, 200);
  bytes = Buffer.from(await r.arrayBuffer());
  // Bob cannot download it.
  const b = await bob.authFetch(first.data);
  assert.notEqual(b.status, 200, "bob downloaded alice's output");
} else {
  bytes = Buffer.from(first.data);
}
assert.equal(bytes.subarray(1, 4).toString(), "PNG");
console.log(`alice: prompt ${out.prompt_id}, ${out.images.length} image(s)`);

// Bob sees neither alice's history nor her queue.
const h = await bob.c.fetchApi(`/history/${out.prompt_id}`);
assert.deepEqual(await h.json(), {});
const q = await bob.c.getQueue();
assert.equal(q.Running.length + q.Pending.length, 0, JSON.stringify(q));
alice.c.close();
console.log("@stable-canvas/comfyui-client: ok");
process.exit(0);
