#!/usr/bin/env python3
"""`make bench`: DICOM ingest figures of the lab, next to stock Debian Orthanc and a null sink.

A benchmark, not a test (never part of `make test`). It needs the lab up (`make lab`) and drives
only the lab's containers and two of its own (``orbench-stock``: Debian's orthanc package with its
default configuration; ``orbench-sink``: dcmtk's ``storescp --ignore``) on its own network
``orbench-net``. Every sender is dcmtk's ``storescu`` in a lab modality container, sending the same
300 generated MR slices (512x512, 16-bit) each time. In each round every scenario runs once, in a
fixed order (ours, stock, sink, ours 4, ...), so each ratio is paired within a round and comes
from the same invocation; the doc gives the median, min and max over the rounds.

It prints a table and rewrites docs/benchmarks.md. Environment: BENCH_ROUNDS (default 5),
BENCH_KEEP=1 keeps orbench-* between invocations, BENCH_INSTANCES (default 300; fewer only to
try the script), BENCH_DOC (default docs/benchmarks.md).
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = ROOT / "inventories" / "lab"
ARTIFACTS = Path(os.environ.get("ORTHANC_REMOTE_LAB_ARTIFACTS") or INVENTORY / "artifacts")
IMAGE = os.environ.get("ORTHANC_REMOTE_IMAGE_RESOLVED") or subprocess.run(
    [str(ROOT / "scripts" / "image-tag.sh")], capture_output=True, text=True, check=True).stdout.strip()

PACS, CT, MRI = "orlab-pacs", "orlab-ct", "orlab-mri"
STOCK, SINK, NET = "orbench-stock", "orbench-sink", "orbench-net"
# Not 10.231.x (the lab and molecule) and not Docker's default pools.
NET_SUBNET, STOCK_IP, SINK_IP, CT_IP_ON_NET = "10.233.77.0/24", "10.233.77.10", "10.233.77.20", "10.233.77.40"
SINK_PLAIN_PORT, SINK_TLS_PORT = 11112, 11113
STOCK_PORT, STOCK_AET = 4242, "ORTHANC"          # Debian's default orthanc.json
WORK = "/root/bench"                              # in the sender containers
CERTS = "/etc/orthanc-remote-test"            # the modality's DICOM TLS package (playbooks/verify.yml)
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
INSTANCES = int(os.environ.get("BENCH_INSTANCES", "300"))
DOC = ROOT / os.environ.get("BENCH_DOC", "docs/benchmarks.md")
IPERF_PORT = 5201
SLICE_BYTES = 512 * 512 * 2 + 1024                # pixels + header; main() reads the real size
# Host CPU busy (all cores) in the idle second before a run above which the run is flagged.
BUSY_THRESHOLD = 0.25

GENERATOR = r'''
import os, sys
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
outdir, count, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(outdir, exist_ok=True)
study, series = generate_uid(), generate_uid()
mr = "1.2.840.10008.5.1.4.1.1.4"
for index in range(count):
    uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = mr, uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = f"{outdir}/{index:03d}.dcm"
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.SOPInstanceUID = mr, uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID, ds.PatientName = f"BENCH-{tag}", f"Bench^{tag}"
    ds.Modality, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "MR", "1", 1, index + 1
    ds.Rows = ds.Columns = 512
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = os.urandom(512 * 512 * 2)
    ds.save_as(path, write_like_original=False)
'''

# Orthanc's REST API from inside its own container (loopback): count or delete the bench's patients.
REST = r'''
import base64, json, sys, urllib.request
action, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
def call(method, path):
    request = urllib.request.Request("http://127.0.0.1:8042" + path, method=method)
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", "Basic " + token)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")
count = 0
for patient in call("GET", "/patients?expand"):
    if not patient["MainDicomTags"].get("PatientID", "").startswith("BENCH-"):
        continue
    count += call("GET", f"/patients/{patient['ID']}/statistics")["CountInstances"]
    if action == "clear":
        call("DELETE", f"/patients/{patient['ID']}")
print(count)
'''


def run(argv: list[str], check: bool = True, timeout: float = 900, stdin: str | None = None) -> str:
    """Run a host command; return its stdout (stderr appended on failure)."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=stdin, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {result.returncode}: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result.stdout


def dexec(container: str, script: str, check: bool = True, timeout: float = 900) -> str:
    """Run a shell script in a container as root; return its stdout."""
    return run(["docker", "exec", "-i", container, "sh", "-c", script], check=check, timeout=timeout)


def container_exists(name: str) -> bool:
    """True when a container of that name exists (running or not)."""
    return subprocess.run(["docker", "container", "inspect", name], capture_output=True, check=False).returncode == 0


def site_facts() -> dict:
    """The lab's site facts (inventories/lab/group_vars/all/site.yml): AE titles, ports, modalities."""
    return yaml.safe_load((INVENTORY / "group_vars" / "all" / "site.yml").read_text())


# --- the host: machine, load ---------------------------------------------------------------------

def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def background_busy(seconds: float = 1.0) -> float:
    """Fraction of all host CPUs busy over `seconds` while the bench itself sends nothing."""
    busy0, total0 = cpu_times()
    time.sleep(seconds)
    busy1, total1 = cpu_times()
    return (busy1 - busy0) / max(1, total1 - total0)


def other_containers() -> list[str]:
    """Running containers that are neither the lab's nor the bench's (e.g. a molecule scenario)."""
    names = run(["docker", "ps", "--format", "{{.Names}}"]).split()
    return sorted(n for n in names if not n.startswith(("orlab-", "orbench-")))


_ids: dict[str, str] = {}


def container_cpu_ns(container: str) -> int | None:
    """CPU time used so far by every process of a container (its cgroup), in ns; None if unreadable."""
    if container not in _ids:
        _ids[container] = run(["docker", "inspect", "-f", "{{.Id}}", container]).strip()
    cid = _ids[container]
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text())
    for v2 in (Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat"),
               Path(f"/sys/fs/cgroup/docker/{cid}/cpu.stat")):
        if v2.exists():
            usage = next(line.split()[1] for line in v2.read_text().splitlines() if line.startswith("usage_usec"))
            return int(usage) * 1000
    return None


def own_containers() -> list[str]:
    """The lab's and the bench's running containers (their CPU is the bench's own)."""
    names = run(["docker", "ps", "--format", "{{.Names}}"]).split()
    return sorted(n for n in names if n.startswith(("orlab-", "orbench-")))


def own_cpu_ns() -> int:
    """CPU time used so far by every lab and bench container, in ns."""
    return sum(container_cpu_ns(name) or 0 for name in OWN)


OWN: list[str] = []                       # filled by main() once the bench's containers run
NS_PER_TICK = 1e9 / os.sysconf("SC_CLK_TCK")


def loadavg() -> float:
    """The host's 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine() -> dict[str, str]:
    """nproc, CPU model and RAM of the host (the lab containers share it)."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:")))
    return {"nproc": str(os.cpu_count()), "cpu": model, "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
            "kernel": platform.release()}


def package_version(container: str, package: str) -> str:
    """The Debian version of a package installed in a container ('-' when absent)."""
    out = dexec(container, f"dpkg-query -W -f '${{Version}}' {package} 2>/dev/null || true", check=False)
    return out.strip() or "-"


def versions() -> dict[str, str]:
    """Orthanc, dcmtk, OpenVPN and Debian versions on the lab PACS, sender and stock container."""
    return {
        "Debian (PACS)": dexec(PACS, "cat /etc/debian_version").strip(),
        "Orthanc (PACS)": package_version(PACS, "orthanc"),
        "Orthanc (stock container)": package_version(STOCK, "orthanc"),
        "dcmtk (senders, sink)": package_version(CT, "dcmtk"),
        "OpenVPN (PACS)": package_version(PACS, "openvpn"),
        "OpenSSL (PACS)": package_version(PACS, "openssl"),
    }


# --- the bench's own containers --------------------------------------------------------------------

def start_systemd_container(name: str, ip: str) -> None:
    """A systemd container of the project's base image on orbench-net (the lab's recipe)."""
    run(["docker", "run", "-d", "--name", name, "--hostname", name, "--network", NET, "--ip", ip,
         "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
         "--security-opt", "seccomp=unconfined", "--cgroupns", "host",
         "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
         "-e", "container=docker", "--stop-signal", "SIGRTMIN+3", "--label", "owner=orbench",
         IMAGE, "/lib/systemd/systemd"])
    for _ in range(60):
        state = dexec(name, "systemctl is-system-running 2>/dev/null || true", check=False).strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise RuntimeError(f"{name}: systemd did not come up")


def ensure_peers() -> None:
    """orbench-net, the stock Orthanc and the null sink; the CT sender joins orbench-net."""
    if subprocess.run(["docker", "network", "inspect", NET], capture_output=True, check=False).returncode != 0:
        run(["docker", "network", "create", "--subnet", NET_SUBNET, "--label", "owner=orbench", NET])
    apt = ("export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && "
           "apt-get install -y -qq --no-install-recommends {} >/dev/null")
    if not container_exists(STOCK):
        print(f"==> {STOCK}: Debian's orthanc with its default configuration", file=sys.stderr)
        start_systemd_container(STOCK, STOCK_IP)
        dexec(STOCK, apt.format("orthanc python3"), timeout=900)
    if not container_exists(SINK):
        print(f"==> {SINK}: storescp --ignore (plain and DICOM TLS)", file=sys.stderr)
        start_systemd_container(SINK, SINK_IP)
        dexec(SINK, apt.format("dcmtk openssl"), timeout=900)
    # Wait for stock Orthanc's DICOM port (the package starts the service).
    for _ in range(60):
        if dexec(STOCK, f"grep -q ':{STOCK_PORT:04X} ' /proc/net/tcp && echo up || true", check=False).strip() == "up":
            break
        time.sleep(1)
    else:
        raise RuntimeError(f"{STOCK}: Orthanc does not listen on {STOCK_PORT}")
    # The sink: a self-signed server certificate; it requires the modality's certificate from the
    # lab CA, as our PACS does. --fork: one process per association (storescp is serial otherwise).
    ca = (ARTIFACTS / "modalities" / "ct-1" / "ca.crt").read_text()
    run(["docker", "exec", "-i", SINK, "sh", "-c", "mkdir -p /root/sink && cat > /root/sink/lab-ca.crt"], stdin=ca)
    dexec(SINK, "cd /root/sink && [ -s sink.crt ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                "-nodes -keyout sink.key -out sink.crt -days 30 -subj /CN=orbench-sink 2>/dev/null")
    dexec(SINK, "pkill -x storescp || true; cd /root/sink && "
                f"TCP_NODELAY=1 nohup storescp --fork --ignore {SINK_PLAIN_PORT} >plain.log 2>&1 </dev/null & "
                f"cd /root/sink && TCP_NODELAY=1 nohup storescp --fork --ignore +tls sink.key sink.crt +cf lab-ca.crt "
                f"{SINK_TLS_PORT} >tls.log 2>&1 </dev/null & sleep 1")
    sink_crt = dexec(SINK, "cat /root/sink/sink.crt")
    run(["docker", "exec", "-i", CT, "sh", "-c", f"mkdir -p {WORK} && cat > {WORK}/sink.crt"], stdin=sink_crt)
    networks = run(["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", CT])
    if NET not in json.loads(networks):
        run(["docker", "network", "connect", "--ip", CT_IP_ON_NET, NET, CT])


def remove_peers() -> None:
    """Undo ensure_peers: the CT leaves orbench-net; orbench-* go unless BENCH_KEEP=1."""
    subprocess.run(["docker", "network", "disconnect", "-f", NET, CT], capture_output=True, check=False)
    if os.environ.get("BENCH_KEEP") == "1":
        return
    for name in (STOCK, SINK):
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    subprocess.run(["docker", "network", "rm", NET], capture_output=True, check=False)


def iperf_rules(facts: dict) -> list[str]:
    """ufw rules that let the two senders reach iperf3 on the PACS (added for the run, then deleted)."""
    mods = {m["name"]: m for m in facts["site_modalities"]}
    return [f"allow proto tcp from {mods['ct-1']['host']} to any port {IPERF_PORT}",
            f"allow in on tun0 proto tcp from {mods['mri-1']['host']} to any port {IPERF_PORT}"]


def ensure_iperf(facts: dict) -> None:
    """iperf3 (Debian's) in the CT, the MRI and the PACS; its server on the PACS, reachable by both.

    The MRI has no route to a mirror: the packages are downloaded in the CT and copied over."""
    if not dexec(CT, "command -v iperf3 || true").strip():
        dexec(CT, "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; "
                  "apt-get install -y -qq --no-install-recommends iperf3 >/dev/null", timeout=600)
    dexec(CT, f"mkdir -p {WORK}/debs && cd {WORK}/debs && ls iperf3_*.deb >/dev/null 2>&1 || "
              "apt-get download iperf3 libiperf0 libsctp1 >/dev/null")
    for box in (MRI, PACS):
        if dexec(box, "command -v iperf3 || true").strip():
            continue
        with tempfile.TemporaryDirectory(prefix="orbench-") as tmp:
            run(["docker", "cp", f"{CT}:{WORK}/debs", tmp])
            run(["docker", "cp", f"{tmp}/debs", f"{box}:/root/orbench-debs"])
        dexec(box, "DEBIAN_FRONTEND=noninteractive dpkg -i /root/orbench-debs/*.deb >/dev/null && rm -rf /root/orbench-debs")
    dexec(PACS, f"[ -s /run/orbench-iperf3.pid ] && kill -0 $(cat /run/orbench-iperf3.pid) 2>/dev/null || "
                f"iperf3 -s -D -p {IPERF_PORT} -I /run/orbench-iperf3.pid")
    for rule in iperf_rules(facts):
        dexec(PACS, f"ufw insert 1 {rule} >/dev/null")


def remove_iperf(facts: dict) -> None:
    """Stop the iperf3 server on the PACS and delete the bench's ufw rules (iperf3 stays installed)."""
    for rule in iperf_rules(facts):
        dexec(PACS, f"ufw delete {rule} >/dev/null 2>&1 || true", check=False)
    dexec(PACS, "[ -s /run/orbench-iperf3.pid ] && kill $(cat /run/orbench-iperf3.pid); rm -f /run/orbench-iperf3.pid",
          check=False)


# --- the series -------------------------------------------------------------------------------------

def ensure_series(container: str, tags: list[str]) -> None:
    """Generate each series once in the sender container (kept: every run sends the same files)."""
    for tag in tags:
        have = dexec(container, f"ls {WORK}/{tag} 2>/dev/null | wc -l").strip()
        if int(have) == INSTANCES:
            continue
        print(f"==> {container}: generating series {tag} ({INSTANCES} MR slices 512x512, 16-bit)", file=sys.stderr)
        run(["docker", "exec", "-i", container, "sh", "-c", f"mkdir -p {WORK} && cat > {WORK}/generate.py"],
            stdin=GENERATOR)
        dexec(container, f"rm -rf {WORK}/{tag} && python3 {WORK}/generate.py {WORK}/{tag} {INSTANCES} {tag}",
              timeout=900)


def copy_series(source: str, target: str, tag: str) -> None:
    """Copy a generated series from one container to another through the host (same bytes)."""
    have = dexec(target, f"ls {WORK}/{tag} 2>/dev/null | wc -l").strip()
    if int(have) == INSTANCES:
        return
    with tempfile.TemporaryDirectory(prefix="orbench-") as tmp:
        run(["docker", "cp", f"{source}:{WORK}/{tag}", tmp])
        dexec(target, f"mkdir -p {WORK} && rm -rf {WORK}/{tag}")
        run(["docker", "cp", f"{tmp}/{tag}", f"{target}:{WORK}/{tag}"])


# --- one run --------------------------------------------------------------------------------------

@dataclass
class Target:
    """Where a scenario sends: host, port, called AE title, TLS options, and how to count/clear it."""
    name: str
    host: str
    port: int
    aec: str
    tls: str = ""
    orthanc: str | None = None            # container whose Orthanc stores (None: the null sink)
    rest_user: tuple[str, str] = ("", "")
    box: str = ""                         # the receiving container (its CPU time is measured)


@dataclass
class Scenario:
    """One measured configuration: a sender, a target, and the series sent per association."""
    key: str
    label: str
    sender: str
    aet: str
    target: Target
    associations: int = 1
    series: list[str] = field(default_factory=lambda: ["a"])   # one series per sender process
    iperf: bool = False                   # raw TCP (iperf3, 5 s) instead of DICOM
    pdu: int | None = None                # the lab PACS's MaximumPduLength for this run (None: as deployed)


@dataclass
class Result:
    """One run of a scenario: elapsed seconds for all its instances, and the host's load."""
    scenario: str
    round: int
    seconds: float
    instances: int
    megabytes: float
    load_before: float
    load_after: float
    busy_before: float
    busy_during: float | None = None      # host CPU used by anything but the lab and bench containers
    recv_cpu_ms: float | None = None      # receiving container's CPU per instance
    send_cpu_ms: float | None = None      # sending container's CPU per instance

    @property
    def rate(self) -> float:
        """Instances per second (0 for raw TCP)."""
        return self.instances / self.seconds

    @property
    def busy(self) -> bool:
        """Taken on a busy machine: the host was busy before it, or something else used the CPU during it."""
        return max(self.busy_before, self.busy_during or 0.0) > BUSY_THRESHOLD

    @property
    def mbs(self) -> float:
        """Megabytes (10^6) per second."""
        return self.megabytes / self.seconds


def sender_script(s: Scenario) -> str:
    """The shell run in the sender: N storescu in parallel, timed inside the container."""
    groups: list[str] = []
    for tag in s.series:
        if s.associations == 1:
            groups.append(f"{WORK}/{tag}/*.dcm")
        else:
            per = -(-INSTANCES // s.associations)
            for i in range(s.associations):
                names = " ".join(f"{WORK}/{tag}/{n:03d}.dcm" for n in range(i * per, min(INSTANCES, (i + 1) * per)))
                groups.append(names)
    t = s.target
    lines = ["rm -f /tmp/orbench-out.*", "start=$(date +%s.%N)"]
    for i, files in enumerate(groups):
        lines.append(f"TCP_NODELAY=1 storescu -v -to 30 -ta 30 -td 60 {t.tls} -aet {shlex.quote(s.aet)} "
                     f"-aec {shlex.quote(t.aec)} {t.host} {t.port} {files} >/tmp/orbench-out.{i} 2>&1 &")
    lines += ["wait", "end=$(date +%s.%N)", 'echo "$start $end"',
              "cat /tmp/orbench-out.* | grep -c 'Received Store Response (Success)' || true"]
    return "\n".join(lines)


def orthanc_count(t: Target, action: str = "count") -> int:
    """Instances of the bench's patients stored in the target's Orthanc (action=clear deletes them)."""
    if t.orthanc is None:
        return 0
    run(["docker", "exec", "-i", t.orthanc, "sh", "-c", "cat > /tmp/orbench-rest.py"], stdin=REST)
    out = dexec(t.orthanc, f"python3 /tmp/orbench-rest.py {action} {shlex.quote(t.rest_user[0])} "
                           f"{shlex.quote(t.rest_user[1])}", timeout=600)
    return int(out.strip())


def measure_iperf(s: Scenario, round_no: int) -> Result:
    """Raw TCP throughput of a path: iperf3 for 5 s to the target host (the server is on the PACS)."""
    busy = background_busy()
    load0 = loadavg()
    out = dexec(s.sender, f"iperf3 -J -t 5 -c {s.target.host} -p {IPERF_PORT}", timeout=60)
    load1 = loadavg()
    end = json.loads(out)["end"]["sum_received"]
    return Result(s.key, round_no, float(end["seconds"]), 0, end["bytes"] / 1e6, load0, load1, busy)


PDU_FILE = "/etc/orthanc/zz-orbench-pdu.json"
_pacs_pdu: list[int | None] = [None]     # what the PACS runs with now


def set_pacs_pdu(pdu: int | None) -> None:
    """Give the lab PACS's Orthanc a MaximumPduLength of its own for the next runs (None: as deployed).

    An extra top-level file in /etc/orthanc (the role never writes that key) and a restart;
    set_pacs_pdu(None) deletes it and restarts again, which restores the deployed configuration."""
    if pdu == _pacs_pdu[0]:
        return
    if pdu is None:
        dexec(PACS, f"rm -f {PDU_FILE}")
    else:
        dexec(PACS, f"printf '{{\"MaximumPduLength\": {int(pdu)}}}\\n' > {PDU_FILE} && "
                    f"chown root:orthanc {PDU_FILE} && chmod 0640 {PDU_FILE}")
    dexec(PACS, "systemctl restart orthanc")
    port = int(site_facts()["site_dicom"]["port"])
    for _ in range(60):
        if dexec(PACS, f"grep -q ':{port:04X} 00000000:0000 0A' /proc/net/tcp && echo up || true").strip() == "up":
            break
        time.sleep(1)
    else:
        raise RuntimeError("the PACS's Orthanc did not come back after a restart")
    time.sleep(2)
    _pacs_pdu[0] = pdu


def measure(s: Scenario, round_no: int) -> Result:
    """Run a scenario once: empty the target, send, check every instance arrived."""
    if s.iperf:
        return measure_iperf(s, round_no)
    if s.target.orthanc == PACS:
        set_pacs_pdu(s.pdu)
    orthanc_count(s.target, "clear")
    time.sleep(1)                         # let the deletion settle before sampling the host
    busy = background_busy()
    load0 = loadavg()
    recv0, send0 = container_cpu_ns(s.target.box), container_cpu_ns(s.sender)
    host0, own0 = cpu_times(), own_cpu_ns()
    out = dexec(s.sender, sender_script(s), timeout=1200).split()
    host1, own1 = cpu_times(), own_cpu_ns()
    recv1, send1 = container_cpu_ns(s.target.box), container_cpu_ns(s.sender)
    load1 = loadavg()
    others = ((host1[0] - host0[0]) - (own1 - own0) / NS_PER_TICK) / max(1, host1[1] - host0[1])
    start, end, ok = float(out[0]), float(out[1]), int(out[2])
    expected = INSTANCES * len(s.series)
    if ok != expected:
        log = dexec(s.sender, "tail -n 15 /tmp/orbench-out.0", check=False)
        raise RuntimeError(f"{s.key}: {ok}/{expected} instances acknowledged\n{log}")
    if s.target.orthanc is not None:
        stored = orthanc_count(s.target)
        if stored != expected:
            raise RuntimeError(f"{s.key}: {stored}/{expected} instances stored")
    per_inst = (lambda a, b: None if a is None or b is None else (b - a) / 1e6 / expected)
    return Result(s.key, round_no, end - start, expected, expected * SLICE_BYTES / 1e6, load0, load1, busy,
                  max(0.0, others), per_inst(recv0, recv1), per_inst(send0, send1))


# --- the table ----------------------------------------------------------------------------------

@dataclass
class Ratio:
    """A figure of issue 16: numerator / denominator scenario rates, paired per round."""
    label: str
    num: str
    den: str
    meaning: str
    metric: str = "rate"                  # a Result property: rate (inst/s), mbs (MB/s), recv_cpu_ms
    issue: str = "-"                      # what issue 16 measured before, and its target


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def fmt(values: list[float], digits: int = 2) -> str:
    """'median (min-max)'."""
    med, lo, hi = spread(values)
    return f"{med:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def paired(results: list[Result], ratio: Ratio, quiet_only: bool = False) -> list[float]:
    """num/den per round in which both ran (quiet_only: and neither started on a busy host)."""
    by = {(r.scenario, r.round): r for r in results}
    rounds = sorted({r.round for r in results})
    values = []
    for n in rounds:
        if (ratio.num, n) in by and (ratio.den, n) in by:
            if quiet_only and (by[(ratio.num, n)].busy or by[(ratio.den, n)].busy):
                continue
            num, den = getattr(by[(ratio.num, n)], ratio.metric), getattr(by[(ratio.den, n)], ratio.metric)
            if num is not None and den:
                values.append(num / den)
    return values


def render(results: list[Result], scenarios: list[Scenario], ratios: list[Ratio], info: dict) -> tuple[str, str]:
    """(terminal table, Markdown doc)."""
    busy_runs = [r for r in results if r.busy]
    busy = bool(busy_runs)
    ratio_rows = []
    for ratio in ratios:
        values = paired(results, ratio)
        if values:
            quiet = paired(results, ratio, quiet_only=True)
            ratio_rows.append((ratio.label, fmt(values), len(values), ratio.meaning,
                               f"{fmt(quiet)} [{len(quiet)}]" if quiet else "none quiet", ratio.issue))
    rate_rows = []
    for s in scenarios:
        runs = [r for r in results if r.scenario == s.key]
        if runs:
            rates = "-" if s.iperf else fmt([r.rate for r in runs], 1)
            recv = [r.recv_cpu_ms for r in runs if r.recv_cpu_ms is not None]
            send = [r.send_cpu_ms for r in runs if r.send_cpu_ms is not None]
            rate_rows.append((s.label, rates, fmt([r.mbs for r in runs], 1), len(runs),
                              fmt(recv, 2) if recv else "-", fmt(send, 2) if send else "-"))

    term = ["", f"{'ratio':<66}{'median (min-max)':<21}runs  quiet rounds only [n]"]
    term += [f"{label:<66}{value:<21}{n:<6}{quiet}" for label, value, n, _, quiet, _ in ratio_rows]
    term += ["", f"{'scenario':<66}{'inst/s median (min-max)':<27}MB/s"]
    term += [f"{label:<66}{value:<27}{mbs}" for label, value, mbs, *_ in rate_rows]
    term += ["", f"busy machine: {'YES' if busy else 'no'} ({len(busy_runs)} of {len(results)} runs had the host more "
                 f"than {BUSY_THRESHOLD:.0%} busy with something else before or during them); doc: {DOC}"]

    md = ["# Benchmarks", "",
          "Written by `make bench` (scripts/bench.py); do not edit by hand. Ratios matter, absolute figures "
          "depend on the machine and on what else runs on it.", "",
          f"Run: {info['when']}, {info['rounds']} interleaved rounds, {info['duration']:.0f} s.", "",
          "## Machine and versions", "",
          "| | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in info["machine"].items()]
    md += [f"| {k} | {v} |" for k, v in info["versions"].items()]
    md += ["", "## Busy machine", "",
           (f"**Yes**: in {len(busy_runs)} of {len(results)} runs something other than the lab and the bench "
            f"used more than {BUSY_THRESHOLD:.0%} of the host's CPU in the idle second before the run or during "
            "it (see the per-run table): figures from those runs were taken on a busy machine.") if busy else
           (f"No: in every run, and in the idle second before it, other work used at most {BUSY_THRESHOLD:.0%} "
            "of the host's CPU."), "",
           "Other containers running (not the lab's, not the bench's): at the start "
           f"{', '.join(info['others'][0]) or 'none'}; at the end {', '.join(info['others'][1]) or 'none'}.", "",
           "## Ratios (issue 16, point 1)", "",
           "Median (min-max) of the per-round ratios; each round runs every scenario once, one after "
           "the other, so the two sides of a ratio are measured minutes apart at most. \"Quiet rounds\": "
           f"the same over the rounds in which neither side was taken on a busy machine (other work above "
           f"{BUSY_THRESHOLD:.0%} of the host's CPU before or during the run), [how many].", "",
           "| ratio | median (min-max), all rounds | rounds | quiet rounds only [n] | issue 16: measured before; target "
           "| what is compared |", "|---|---|---|---|---|---|"]
    md += [f"| {label} | {value} | {n} | {quiet} | {issue} | {meaning} |"
           for label, value, n, meaning, quiet, issue in ratio_rows]
    md += ["", "## Ingest per scenario", "",
           f"{INSTANCES} MR slices, 512x512, 16-bit, Explicit VR Little Endian ({SLICE_BYTES / 1000:.0f} kB each), "
           "generated once "
           "with pydicom and sent by dcmtk's `storescu` with `TCP_NODELAY=1`; the time is the sender's, "
           "from the first association to the last acknowledgement. Before each run the bench's patients are "
           "deleted from the target, after it the stored count is checked through REST.", "",
           "CPU columns: CPU time of the receiving and of the sending container (cgroup) per instance, "
           "in ms, over the run.", "",
           "| scenario | inst/s median (min-max) | MB/s median (min-max) | runs | receiver CPU ms/inst | "
           "sender CPU ms/inst |", "|---|---|---|---|---|---|"]
    md += [f"| {label} | {rate} | {mbs} | {n} | {recv} | {send} |" for label, rate, mbs, n, recv, send in rate_rows]
    md += ["", "Scenarios:", ""]
    md += [f"- `{s.key}`: iperf3 from {s.sender} to {s.target.host} (the PACS), one TCP stream for 5 s" if s.iperf else
           f"- `{s.key}`: {s.sender} (AE `{s.aet}`) -> {s.target.name} ({s.target.host}:{s.target.port}), "
           f"{s.associations} association(s) per series, series {', '.join(s.series)}" for s in scenarios]
    md += ["", "## Load per run", "",
           "`busy before`: the host's CPU use (all cores) in the second before the run, while the bench sent "
           "nothing. `others during`: the host's CPU use during the run minus that of the lab's and the bench's "
           "containers (it includes Docker's own work for `docker exec`). `load`: /proc/loadavg's 1-minute "
           "figure before and after.", "",
           "| round | scenario | s | inst/s | MB/s | busy before | others during | load before | load after |",
           "|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {r.round} | {r.scenario} | {r.seconds:.2f} | {r.rate:.1f} | {r.mbs:.1f} | {r.busy_before:.0%} | "
           f"{'-' if r.busy_during is None else format(r.busy_during, '.0%')}{' (busy)' if r.busy else ''} | "
           f"{r.load_before:.2f} | {r.load_after:.2f} |" for r in results]
    md += ["", info["notes"].strip(), ""]
    return "\n".join(term), "\n".join(md)


NOTES = """
## What the bench does to the lab, and undoes

- `orbench-stock` (Debian's `orthanc`, default configuration: AE `ORTHANC`, plain DICOM on 4242, accepts
  any AE) and `orbench-sink` (dcmtk's `storescp --fork --ignore`, with `TCP_NODELAY=1`, plain on 11112
  and DICOM TLS on 11113 with a self-signed certificate, requiring the modality's certificate from the
  lab CA) run on `orbench-net` (10.233.77.0/24); the CT joins that network for the run. The sender is
  the same for all three targets (the CT's `storescu`, its own client certificate for TLS).
- iperf3 (Debian's) is installed in the CT, the MRI and the PACS (it stays); its server runs on the
  PACS during the run, with two ufw rules letting the CT and, through the tunnel, the MRI reach port
  5201; both rules are deleted and the server stopped at the end.
- The bench's patients (`BENCH-*`) are deleted from each Orthanc before every run and at the end.
- With `BENCH_PDU=<bytes>` the lab PACS also runs `ours_1`/`ours_4` with `MaximumPduLength` set by an
  extra file `/etc/orthanc/zz-orbench-pdu.json` and a restart, interleaved with the deployed
  configuration (the deployed Orthanc negotiates 16384); the file is removed and Orthanc restarted at
  the end. An experiment, not a role setting.
- `orbench-*` and `orbench-net` are removed at the end (`BENCH_KEEP=1` keeps them for the next run).

## Reading the figures

- "ours" is the lab PACS as the roles deploy it, which is DICOM TLS only: ours / stock compares it with
  what a user of Debian's package gets out of the box (plain DICOM, no `TCP_NODELAY`). DICOM TLS / plain
  is measured on the null sink, whose only work is the protocol; the ours / sink ratios use the TLS sink
  (same protocol, same client certificate) and, for the whole distance, the plain one.
- Receiver CPU is the whole container's cgroup: for the VPN path it includes the OpenVPN server on the
  PACS.
- All containers share the host's cores: the sender, the gateway and the receiver compete for them, so
  a busy machine lowers the figures of the CPU-bound paths (VPN, TLS) more than the others.
## Not measured by `make bench` (yet)

- Converge figures, not part of this script: issue 16 measured by hand a fresh converge at 9.7x
  (276 s vs 28.6 s) the time of installing the same Debian packages in one apt call (target <= 1.5x,
  acceptance <= 3x), and a no-op re-run at 0.70 of a fresh converge (193.5 s vs 276 s; target <= 0.15,
  acceptance <= 0.2). They need a fresh PACS per run (a new lab, about 10 minutes each). The
  whole-site figures have not been taken again since the changes below.
- 200-client VPN no-op / 1-client no-op: `scripts/bench-openvpn-clients.sh` prints both times
  (10-20 minutes, a container of its own); not rerun here.

## Converge speed (issue 16, point 2): before and after, measured by hand

Taken on 2026-12-02 between 14:42 and 15:25 UTC by hand (not by `make bench`), "before" being main at
15219db and "after" the branch with the changes: the package lists refreshed once per run
(`cache_valid_time`, the security suite added before the first install), every role's packages
installed by site.yml at once (one apt call without recommends, one with; Orthanc and nginx stay with
the orthanc role, which holds their start), log_monitoring's check timers read with one `systemctl
show` and started with one `systemctl enable --now` when needed, and `unattended-upgrade` run only
when apt has something to upgrade or a reboot is pending. Timings are Ansible's profile_tasks figures
and wall-clock seconds.

**Busy machine: yes.** The 1-minute load of this 2-core host was between 2.8 and 16.5 during these
runs (the lab, other Docker work, and in the last runs this work's own unit tests): the same unchanged
task (log_monitoring's five timer files) took 4.7 s in one fresh converge and 23.8 s in another. Totals of different runs are therefore
not comparable on their own; the rounds below are interleaved, and the tasks the changes touch are
shown on their own.

### Package installs in site.yml's order (fresh containers)

Fresh containers of the project's image, the inventory of `molecule/log_monitoring` (VPN on). Before:
the apt calls main's roles make under site.yml, replayed with the same arguments in the same order
(13 apt calls, 3 of them refreshing the package lists). After: `site.yml --tags untagged` (the
validation play, one dpkg read, the security suite and one refresh, then 2 apt calls). In round 2 and
in the later run below, both sides ended with the same 221 packages (compared with `dpkg-query`).

| round | before: apt tasks, s | after: refresh + install, s | after / before | 1-min load at start, before / after |
|---|---|---|---|---|
| 1 | 63.0 | 38.3 (*) | 0.61 | 3.19 / 3.86 |
| 2 | 99.8 | 48.5 | 0.49 | 5.14 / 4.16 |

(*) Round 1 ran the call with recommends first and installed three more packages (libglib2.0-0's
recommends); the call without recommends now comes first. A later fresh run of the final version took
58.9 s (7.6 + 51.4) at a load of 16.5, without a "before" beside it. On a container with every package
installed, the final version's pre-tasks are one `dpkg-query` read (changed=0) instead of the
security-suite tasks and two apt calls.

### Role scenario `log_monitoring` (ufw_firewall, orthanc, log_monitoring on one container)

`molecule test -s log_monitoring` with the profile_tasks callback, once per side (after: the branch at
1841bca; the scenario does not run site.yml, so the site-level install is not in it, nor is
base_hardening):

| side | fresh converge, s | no-op converge (idempotence), s | changed on the no-op | 1-min load at the test's start |
|---|---|---|---|---|
| before (main) | 231.9 | 221.0 | 0 | 2.82, rising to 14 during the run |
| after | 98.8 | 65.7 | 0 | 11.37, falling to about 4 |
| after (`molecule converge` only) | 90.8 | - | - | 3.38 |

No-op converges interleaved on the same converged containers (`ansible-playbook` of the scenario's
`converge.yml` with each side's roles; all changed=0):

| round | order | before, s | after, s | 1-min load before -> after each run |
|---|---|---|---|---|
| 1 | after, then before | 80.8 | 151.0 | after 3.41 -> 9.05, before 9.05 -> 6.54 |
| 2 | before, then after | 50.6 | 50.3 | before 6.54 -> 4.29, after 4.29 -> 2.83 |

The tasks the changes touch, in the same runs:

| tasks | before, s | after, s |
|---|---|---|
| check timers, fresh converge (5 `systemd_service` calls; after: one read, one `systemctl enable --now`) | 14.24 | 0.84, 1.44 |
| check timers, no-op converge | 3.28, 1.81, 1.78 | 0.47, 3.37 (load 3 -> 9), 0.41 |
| apt installs and orthanc's refresh, fresh converge | 35.3 | 19.0, 15.6 |

In this scenario the molecule prepare step had refreshed the package lists minutes before, so the
refresh that main's orthanc role forces cost only 1.6 s here (the branch's task, which no longer
refreshes here, 0.55 s); on a server it fetches the lists' index files again.

### base_hardening: `unattended-upgrade` on a no-op run

`molecule test -s base_hardening` (after only, 1-min load 2.84 at start): the fresh converge installed
the pending security updates (`unattended-upgrade` changed, 34.2 s); the no-op converge read the
state (0.92 s) and skipped `unattended-upgrade`. By hand, in a container with nothing it would
upgrade, `unattended-upgrade -v` took 1.1-1.2 s and the simulation that now decides 0.7-0.9 s
(three runs each, load about 5.5): a small saving; the point is that the no-op run only reads. Any
pending update (not only a security one) still lets it run, so nothing it would install is skipped.

### Not measured here

- The `site` scenario (whole site, fresh and no-op): not run by this work; the issue's figures above
  are the last ones.
"""


def scenarios() -> tuple[list[Scenario], list[Ratio]]:
    """The scenarios, in their order within a round, and the ratios computed from them."""
    facts = site_facts()
    dicom = facts["site_dicom"]
    mods = {m["name"]: m for m in facts["site_modalities"]}
    admin = (ARTIFACTS / "credentials" / "admin.txt").read_text().split()[0]
    client_tls = f"+tls {CERTS}/client.key {CERTS}/client.crt +cf {CERTS}/ca.crt"
    ours = Target("the lab PACS over DICOM TLS", facts["site_pacs_addresses"][0], int(dicom["port"]),
                  dicom["aet"], client_tls, PACS, ("admin", admin), PACS)
    ours_vpn = Target("the lab PACS over DICOM TLS, through the gateway's OpenVPN tunnel", "10.8.0.1",
                      int(dicom["port"]), dicom["aet"], client_tls, PACS, ("admin", admin), PACS)
    stock = Target("stock Debian Orthanc (default config, plain DICOM)", STOCK_IP, STOCK_PORT, STOCK_AET,
                   "", STOCK, box=STOCK)
    sink_tls = Target("null sink over DICOM TLS", SINK_IP, SINK_TLS_PORT, "SINK",
                      f"+tls {CERTS}/client.key {CERTS}/client.crt +cf {WORK}/sink.crt", box=SINK)
    sink = Target("null sink, plain DICOM", SINK_IP, SINK_PLAIN_PORT, "SINK", box=SINK)
    ct, mri = mods["ct-1"]["aet"], mods["mri-1"]["aet"]
    s = [
        Scenario("tcp_direct", "raw TCP, CT -> PACS (iperf3)", CT, "-", ours, iperf=True),
        Scenario("tcp_vpn", "raw TCP, MRI -> PACS through the VPN (iperf3)", MRI, "-", ours_vpn, iperf=True),
        Scenario("ours_1", "ours (TLS), 1 association", CT, ct, ours),
        Scenario("stock_1", "stock Orthanc (plain), 1 association", CT, ct, stock),
        Scenario("sink_tls_1", "null sink (TLS), 1 association", CT, ct, sink_tls),
        Scenario("sink_plain_1", "null sink (plain), 1 association", CT, ct, sink),
        Scenario("ours_4", "ours (TLS), 4 associations", CT, ct, ours, 4),
        Scenario("sink_tls_4", "null sink (TLS), 4 associations", CT, ct, sink_tls, 4),
        Scenario("sink_plain_4", "null sink (plain), 4 associations", CT, ct, sink, 4),
        Scenario("ours_2senders", "ours (TLS), 2 concurrent senders x 1 association", CT, ct, ours, 1, ["a", "b"]),
        Scenario("ours_vpn_1", "ours (TLS) through the VPN, 1 association", MRI, mri, ours_vpn),
    ]
    r = [
        Ratio("ours / stock Debian Orthanc, 1 association", "ours_1", "stock_1",
              "the lab PACS as deployed (DICOM TLS, TCP_NODELAY) against Debian's orthanc with its "
              "default configuration (plain DICOM, the only mode it has out of the box); same sender and files",
              issue="4.25 (3.73-5.51); >= 6 quiet (acceptance), >= 12 (goal)"),
        Ratio("ours / null sink, 4 associations", "ours_4", "sink_tls_4",
              "the lab PACS against `storescp --ignore` on the same kind of path with the same protocol "
              "(DICOM TLS, client certificate required), 75 slices per association",
              issue="0.36 (0.32-0.39); >= 0.5"),
        Ratio("ours / null sink, 1 association", "ours_1", "sink_tls_1",
              "the lab PACS against the sink, both DICOM TLS, one association"),
        Ratio("ours / null sink (plain), 4 associations", "ours_4", "sink_plain_4",
              "the lab PACS (TLS) against the plain sink: the whole distance to the protocol's ceiling"),
        Ratio("receiver CPU per instance, ours / null sink, 1 association", "ours_1", "sink_tls_1",
              "CPU time of the receiving container (its cgroup: Orthanc and everything else in it) per instance, "
              "both DICOM TLS (above 1: ours costs more CPU per instance)", "recv_cpu_ms"),
        Ratio("receiver CPU per instance, ours / stock, 1 association", "ours_1", "stock_1",
              "as above, the lab PACS (TLS) against stock Orthanc (plain)", "recv_cpu_ms"),
        Ratio("DICOM TLS / plain (null sink), 1 association", "sink_tls_1", "sink_plain_1",
              "the protocol's cost alone: the lab PACS is TLS-only, so TLS / plain is taken on the sink"),
        Ratio("DICOM TLS / plain (null sink), 4 associations", "sink_tls_4", "sink_plain_4", "as above, 4"),
        Ratio("two concurrent senders / one", "ours_2senders", "ours_1",
              "aggregate inst/s of two storescu processes in the CT (same AE title) sending two different "
              "300-slice series at once to the lab PACS, one association each, against one sending one series"),
        Ratio("VPN path / direct, 1 association", "ours_vpn_1", "ours_1",
              "the MRI through the site gateway's OpenVPN tunnel against the CT direct, both DICOM TLS"),
        Ratio("direct path: DICOM / its raw TCP", "ours_1", "tcp_direct",
              "MB/s of `ours_1` against iperf3 (one TCP stream, 5 s) from the CT to the PACS", "mbs"),
        Ratio("VPN path: DICOM / its raw TCP", "ours_vpn_1", "tcp_vpn",
              "MB/s of `ours_vpn_1` against iperf3 from the MRI to the PACS's tunnel address", "mbs"),
        Ratio("VPN raw TCP / direct raw TCP", "tcp_vpn", "tcp_direct", "iperf3 alone: the tunnel's cost", "mbs"),
    ]
    pdu = int(os.environ.get("BENCH_PDU", "0"))
    if pdu:
        s.insert(s.index(next(x for x in s if x.key == "ours_1")) + 1,
                 Scenario("ours_1_pdu", f"ours (TLS), 1 association, MaximumPduLength {pdu}", CT, ct, ours, pdu=pdu))
        s.insert(s.index(next(x for x in s if x.key == "ours_4")) + 1,
                 Scenario("ours_4_pdu", f"ours (TLS), 4 associations, MaximumPduLength {pdu}", CT, ct, ours, 4,
                          pdu=pdu))
        r += [Ratio(f"MaximumPduLength {pdu} / as deployed (16384), 1 association", "ours_1_pdu", "ours_1",
                    "an experiment (BENCH_PDU): the same PACS with the key set by an extra file, restarted; "
                    "not a role setting"),
              Ratio(f"MaximumPduLength {pdu} / as deployed (16384), 4 associations", "ours_4_pdu", "ours_4",
                    "as above, 4 associations")]
    return s, r


def main() -> int:
    """Check the lab, set up the peers and series, run the rounds, print and write the doc."""
    for name in (PACS, CT, MRI):
        if not container_exists(name):
            print(f"{name} is missing: run `make lab` first", file=sys.stderr)
            return 2
    global SLICE_BYTES
    began = time.time()
    others_start = other_containers()
    facts = site_facts()
    scen, ratios = scenarios()
    try:
        ensure_peers()
        ensure_iperf(facts)
        ensure_series(CT, ["a", "b"])
        copy_series(CT, MRI, "a")
        SLICE_BYTES = int(dexec(CT, f"stat -c %s {WORK}/a/000.dcm"))
        OWN[:] = own_containers()
        info_versions = versions()
        results: list[Result] = []
        for n in range(1, ROUNDS + 1):
            for s in scen:
                result = measure(s, n)
                results.append(result)
                print(f"round {n} {s.key:<14} {result.seconds:7.2f} s {result.rate:7.1f} inst/s "
                      f"busy before {result.busy_before:.0%} others during {result.busy_during or 0:.0%} "
                      f"load {result.load_before:.2f}->{result.load_after:.2f}",
                      file=sys.stderr)
        for s in scen:
            orthanc_count(s.target, "clear")
    finally:
        set_pacs_pdu(None)
        remove_iperf(facts)
        remove_peers()
    info = {"when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "rounds": ROUNDS,
            "duration": time.time() - began, "machine": machine(), "versions": info_versions, "notes": NOTES,
            "others": (others_start, other_containers())}
    term, md = render(results, scen, ratios, info)
    print(term)
    DOC.write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
