#!/usr/bin/env python3
"""Writes a seccomp profile that is INPUT plus the three io_uring syscalls smppgw needs.

smppgw runs on glommio, which does all its IO through io_uring. Docker >= 25 and containerd >= 2.0
removed io_uring_setup, io_uring_enter and io_uring_register from their default profiles, so the
gateway cannot start under them. Start from the profile your runtime uses by default, so that
everything else stays as filtered as before:

  * Docker / moby: profiles/seccomp/default.json of the moby release your engine runs;
  * Podman, CRI-O: /usr/share/containers/seccomp.json (package containers-common);
  * containerd: `containerd` has no file for it; take moby's default.json of the same era and
    pass --oci (below), or use the Security Profiles Operator to record and install a profile.

Usage:
  python3 deploy/seccomp/add-io-uring.py [--oci [--arch ARCH]] DEFAULT.json > smppgw-io-uring.json

--oci writes only what the OCI runtime spec knows, for loaders that read a Localhost profile as
plain OCI (containerd, CRI-O): they ignore moby's `includes`, `excludes` and `archMap`, so a rule
meant only for processes holding a capability (mount, unshare, bpf, ... for CAP_SYS_ADMIN) would
become an allow for everyone. Such rules are dropped (the gateway's pods drop every capability).
So are the rules written for other architectures than the node's (moby's `includes.arches` /
`excludes.arches`: its s390 `clone` rule checks the flags in the second argument, and kept as a
plain allow it would let `clone` create namespaces on x86_64), and the moby-only keys are removed
from the rest. ARCH is moby's name of the nodes' architecture (amd64, arm64, s390x, ppc64le,
riscv64); by default the one this script runs on, so run it for each architecture your nodes
have.

Then:
  docker run --security-opt seccomp=smppgw-io-uring.json ...
  Kubernetes: copy it to /var/lib/kubelet/seccomp/profiles/smppgw-io-uring.json on every node that
  may run smppgw (deploy/k8s/statefulset.yaml refers to it as a Localhost profile).

Trade-off, stated plainly: an io_uring submission performs reads, writes, accepts and connects
without passing through the seccomp filter again, so allowing io_uring widens what a compromised
process could do inside the container's other limits (user, capabilities, namespaces). That is
the price of glommio; keep the rest of the hardening (non-root, no capabilities, read-only root).
Standard library only; Python 3.8 or later.
"""

import json
import platform
import sys

IO_URING = ["io_uring_setup", "io_uring_enter", "io_uring_register"]


def allowed_unconditionally(profile, name):
    """Whether a rule without argument or capability conditions already allows `name`."""
    for rule in profile.get("syscalls", []):
        names = rule.get("names") or ([rule["name"]] if "name" in rule else [])
        if (
            name in names
            and rule.get("action") == "SCMP_ACT_ALLOW"
            and not rule.get("args")
            and not rule.get("includes")
            and not rule.get("excludes")
        ):
            return True
    return False


# `uname -m` -> moby's architecture names (includes.arches / excludes.arches).
MOBY_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "s390x": "s390x",
    "ppc64le": "ppc64le",
    "riscv64": "riscv64",
    "loongarch64": "loong64",
}


def applies_on(rule, arch):
    """Whether moby applies `rule` on `arch` (its architecture conditions)."""
    included = (rule.get("includes") or {}).get("arches")
    excluded = (rule.get("excludes") or {}).get("arches")
    if included and arch not in included:
        return False
    if excluded and arch in excluded:
        return False
    return True


def oci_only(profile, arch):
    """`profile` for `arch` with only OCI fields: rules that need a capability or are for
    another architecture dropped, moby keys removed."""
    rules = []
    for rule in profile.get("syscalls", []):
        if (rule.get("includes") or {}).get("caps") or not applies_on(rule, arch):
            continue
        rules.append({k: v for k, v in rule.items() if k not in ("includes", "excludes", "comment")})
    out = {k: v for k, v in profile.items() if k != "archMap"}
    out["syscalls"] = rules
    return out


def main(argv):
    args = argv[1:]
    oci = args[:1] == ["--oci"]
    if oci:
        args = args[1:]
    arch = MOBY_ARCH.get(platform.machine())
    if oci and args[:1] == ["--arch"] and len(args) >= 2:
        arch = args[1]
        args = args[2:]
    if len(args) != 1 or args[0] in ("-h", "--help"):
        sys.stderr.write(__doc__)
        return 2
    if oci and arch is None:
        sys.stderr.write(f"unknown architecture {platform.machine()!r}: pass --arch\n")
        return 2
    argv = [argv[0], args[0]]
    with open(argv[1], encoding="utf-8") as f:
        profile = json.load(f)
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        sys.stderr.write(f"{argv[1]}: not a seccomp profile (no defaultAction)\n")
        return 1
    if oci:
        profile = oci_only(profile, arch)
    missing = [n for n in IO_URING if not allowed_unconditionally(profile, n)]
    if missing and profile["defaultAction"] != "SCMP_ACT_ALLOW":
        # Only the fields every runtime's profile loader knows (OCI names/action).
        profile.setdefault("syscalls", []).append({"names": missing, "action": "SCMP_ACT_ALLOW"})
    json.dump(profile, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
