"""comfy-api-simplified (PyPI, pinned in scripts/client-deps) against comfy-warden, unchanged:
alice signs in with Basic and an API token as the password (user:token), uploads, runs a
workflow, waits on the WebSocket, downloads; bob (Basic with his password) sees none of it.
Run by tests/clients.rs; exits non-zero on the first failure."""
import os
import sys
import tempfile

from comfy_api_simplified import ComfyApiWrapper, ComfyWorkflowWrapper
from comfy_api_simplified.exceptions import ComfyApiError

url = os.environ["WARDEN_URL"]
png = os.environ["CAT_PNG"]

alice = ComfyApiWrapper(url, user="alice", password=os.environ["ALICE_TOKEN"])
bob = ComfyApiWrapper(url, user="bob", password=os.environ["BOB_PASSWORD"])

up = alice.upload_image(png)
name = up["name"] if not up.get("subfolder") else f'{up["subfolder"]}/{up["name"]}'
workflow = {
    "1": {"class_type": "LoadImage", "inputs": {"image": name}, "_meta": {"title": "Load"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}, "_meta": {"title": "Invert"}},
    "3": {
        "class_type": "SaveImage",
        "inputs": {"filename_prefix": "simplified", "images": ["2", 0]},
        "_meta": {"title": "Save Image"},
    },
}
path = os.path.join(tempfile.mkdtemp(), "workflow.json")
with open(path, "w") as f:
    import json

    json.dump(workflow, f)
wf = ComfyWorkflowWrapper(path)
images = alice.queue_and_wait_images(wf, "Save Image")
assert images, "no image came back"
for fname, data in images.items():
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{fname} is not a PNG"
print(f"alice: {len(images)} image(s): {list(images)}")

# Alice's history names the file; bob sees neither the prompt nor the file.
queue = alice.get_queue()
hist_ids = [k for k in __import__("requests").get(f"{url}/history", auth=alice.auth).json()]
assert hist_ids, "alice has a history"
pid = hist_ids[-1]
assert alice.get_history(pid)[pid]["outputs"], "alice's outputs"
assert bob.get_history(pid) == {}, "bob sees alice's prompt"
out = alice.get_history(pid)[pid]["outputs"]["3"]["images"][0]
try:
    bob.get_image(out["filename"], out["subfolder"], out["type"])
    sys.exit("bob downloaded alice's output")
except ComfyApiError:
    pass
bq = bob.get_queue()
assert not bq["queue_running"] and not bq["queue_pending"], bq
print("comfy-api-simplified: ok")
