# comfy-warden built from this repository, with its test suite (unit tests and the integration
# tests, which run the real daemon against an in-process ComfyUI double over loopback sockets).
{
  lib,
  rustPlatform,
}:

let
  manifest = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = manifest.package.name;
  inherit (manifest.package) version;

  src = lib.fileset.toSource {
    root = ./..;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../tests
      ../examples
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  # The integration tests bind loopback sockets and signal their child daemons; two test
  # threads keep a small builder responsive.
  __darwinAllowLocalNetworking = true;
  preCheck = ''
    export RUST_TEST_THREADS=2
  '';

  meta = {
    description = manifest.package.description;
    license = with lib.licenses; [
      mit
      asl20
    ];
    mainProgram = "comfy-warden";
    platforms = lib.platforms.linux;
  };
}
