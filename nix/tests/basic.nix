# NixOS VM test: comfy-warden from the module in front of a tiny ComfyUI stand-in (python
# http.server answering /object_info, /users, /queue, /prompt and /history). Two users sign in,
# each sees only their own prompt, a user disabled by a configuration switch loses access
# while the daemon keeps running (reload, same pid), and the unit's security score is checked.
{ pkgs, module }:

let
  # Passwords: alice-pw and bob-pw (comfy-warden hash-password).
  aliceHash = "$argon2id$v=19$m=19456,t=2,p=1$wucOsDFzvEOT/SQ4cVG8Pg$pQ0PGAn3QOYnA3dlmHDbkBKq6D4z2Mfe/YclY+ouVo0";
  bobHash = "$argon2id$v=19$m=19456,t=2,p=1$KbGOY3HDBsxO/4zxuFchhQ$E9ApAWFKEMoMcxJpuOSYk+6phi7/yGhZApq99TQZKFc";

  standin = pkgs.writeText "comfy-standin.py" ''
    import json, uuid
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    HISTORY = {}
    USERS = {}
    OBJECT_INFO = {
        "PreviewAny": {"python_module": "comfy_extras.nodes_preview_any", "output_node": True,
                       "input": {"required": {"source": ["*", {}]}}, "output": [], "name": "PreviewAny"},
    }

    class H(BaseHTTPRequestHandler):
        def answer(self, status, value):
            body = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n) or b"{}")

        def do_GET(self):
            path = self.path.split("?")[0].removeprefix("/api")
            if path == "/object_info":
                return self.answer(200, OBJECT_INFO)
            if path == "/users":
                return self.answer(200, {"storage": "server", "users": USERS})
            if path == "/queue":
                return self.answer(200, {"queue_running": [], "queue_pending": []})
            if path == "/history":
                return self.answer(200, HISTORY)
            if path.startswith("/history/"):
                pid = path.split("/")[2]
                return self.answer(200, {pid: HISTORY[pid]} if pid in HISTORY else {})
            if path in ("/system_stats", "/embeddings", "/extensions"):
                return self.answer(200, {} if path == "/system_stats" else [])
            return self.answer(404, {"error": "not found"})

        def do_POST(self):
            path = self.path.split("?")[0].removeprefix("/api")
            if path == "/users":
                name = self.body().get("username", "")
                USERS[name] = name
                return self.answer(200, name)
            if path == "/prompt":
                req = self.body()
                pid = req.get("prompt_id") or str(uuid.uuid4())
                number = len(HISTORY)
                HISTORY[pid] = {
                    "prompt": [number, pid, req.get("prompt", {}), req.get("extra_data", {}), []],
                    "outputs": {},
                    "status": {"status_str": "success", "completed": True, "messages": []},
                    "meta": {},
                }
                return self.answer(200, {"prompt_id": pid, "number": number, "node_errors": {}})
            return self.answer(404, {"error": "not found"})

    ThreadingHTTPServer(("127.0.0.1", 8188), H).serve_forever()
  '';
in
pkgs.testers.runNixOSTest {
  name = "comfy-warden-basic";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ module ];

      systemd.services.comfy-standin = {
        wantedBy = [ "multi-user.target" ];
        before = [ "comfy-warden.service" ];
        serviceConfig = {
          ExecStart = "${pkgs.python3}/bin/python3 ${standin}";
          DynamicUser = true;
        };
      };

      # Stand-ins for secrets managed outside the store (agenix, sops-nix, ...).
      systemd.tmpfiles.settings.comfy-warden-test = {
        "/run/keys/comfy-warden".d.mode = "0700";
        "/run/keys/comfy-warden/alice.phc".f = {
          mode = "0600";
          argument = aliceHash;
        };
      };

      services.comfy-warden = {
        enable = true;
        settings.upstream.url = "http://127.0.0.1:8188";
        users.alice.passwordHashFile = "/run/keys/comfy-warden/alice.phc";
        users.bob.passwordHash = bobHash;
        roles.viewer.permissions = [ "settings" ];
      };

      specialisation.bob-disabled.configuration = {
        services.comfy-warden.users.bob.disabled = true;
      };
    };

  testScript =
    { nodes, ... }:
    let
      switch = "${nodes.machine.system.build.toplevel}/specialisation/bob-disabled/bin/switch-to-configuration";
    in
    ''
      import json

      machine.wait_for_unit("comfy-standin.service")
      machine.wait_for_unit("comfy-warden.service")
      machine.wait_for_open_port(8080)

      def curl(args):
          return machine.succeed(f"curl -sS --fail-with-body {args}")

      def login(user, password):
          body = json.dumps({"username": user, "password": password})
          out = curl(f"-H 'content-type: application/json' -d '{body}' http://127.0.0.1:8080/login")
          return json.loads(out)["jwt_token"]

      def as_user(token, path, data=None):
          extra = f"-H 'content-type: application/json' -d '{data}'" if data else ""
          return curl(f"-H 'Authorization: Bearer {token}' {extra} http://127.0.0.1:8080{path}")

      with subtest("sign-in"):
          alice = login("alice", "alice-pw")
          bob = login("bob", "bob-pw")
          machine.fail(
              "curl -sS --fail -H 'content-type: application/json' "
              "-d '{\"username\": \"alice\", \"password\": \"wrong\"}' http://127.0.0.1:8080/login"
          )
          machine.fail("curl -sS --fail http://127.0.0.1:8080/queue")

      with subtest("each user sees only their own prompts"):
          graph = json.dumps({"prompt": {"1": {"class_type": "PreviewAny", "inputs": {"source": "hi"}}}})
          mine = json.loads(as_user(alice, "/prompt", graph))["prompt_id"]
          theirs = json.loads(as_user(bob, "/prompt", graph))["prompt_id"]
          alice_history = json.loads(as_user(alice, "/history"))
          bob_history = json.loads(as_user(bob, "/history"))
          assert mine in alice_history and theirs not in alice_history, alice_history
          assert theirs in bob_history and mine not in bob_history, bob_history

      with subtest("editing a user reloads without a restart"):
          pid = machine.succeed("systemctl show -P MainPID comfy-warden.service").strip()
          machine.succeed("${switch} test")
          machine.wait_until_succeeds(
              "journalctl -u comfy-warden.service | grep -q 'configuration reloaded'"
          )
          assert pid == machine.succeed("systemctl show -P MainPID comfy-warden.service").strip()
          machine.fail(f"curl -sS --fail -H 'Authorization: Bearer {bob}' http://127.0.0.1:8080/queue")
          as_user(alice, "/queue")

      with subtest("no secret in the store, none in the journal"):
          machine.fail("grep -rl 'alice-pw' /etc/comfy-warden/")
          machine.fail("journalctl -u comfy-warden.service | grep -q 'alice-pw'")
          machine.fail(f"journalctl -u comfy-warden.service | grep -qF '{alice}'")

      with subtest("hardening"):
          machine.succeed("systemd-analyze security comfy-warden.service --threshold=15")
    '';
}
