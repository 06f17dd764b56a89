"""Every file a pull request can commit beside a spec, malformed or linked out, each case a separate process.

Run: ``python benchmarks/hostile_files_campaign.py`` (about 3 minutes on two cores; a tiny random LLaMA,
no downloads). Each case is one ``geomcheck run`` or ``geomcheck trajectory`` under ``CI=true`` with a
5 GB address-space cap and a 90 s limit, in its own project folder. A row counts an internal error
(exit 4, a traceback or "internal error"), a silent pass (exit 0 where the file was damaged), a write
outside the project (any new file in a folder the project links to) and a hang (the limit reached).
The spec parser has its own fuzz campaign (benchmarks/spec_fuzz_campaign.py); the summary table goes
into docs/security.md.
"""
import json, os, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from tiny import save_tiny  # noqa: E402

BASE = Path(tempfile.mkdtemp(prefix="geomcheck-hostile-"))
MEMORY_CAP = 5 << 30
TINY = save_tiny(BASE / "tiny", "llama")
SPEC = "name: s\ninputs: {sequences: 8, tokens: 12}\nchecks:\n  - id: ratio\n    property: first_position_norm\n    expect: {min: 0.0}\n"
GEOM = [str(Path(sys.executable).parent / "geomcheck")]
rows = []

def project(name):
    p = BASE / name; p.mkdir(); (p / "pyproject.toml").write_text("[project]\nname='x'\n"); (p / "specs").mkdir(); (p / "specs" / "s.yaml").write_text(SPEC); return p

def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run(name, args, cwd, outside=None, env=None, damaged=True):
    before = set(outside.rglob("*")) if outside else set()
    t = time.time()
    try:
        done = subprocess.run(GEOM + args, cwd=cwd, capture_output=True, text=True, timeout=90, preexec_fn=_cap,
                              env={**os.environ, "CI": "true", **(env or {})})
        rc, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired:
        rc, out = "hang", ""
    wrote = sorted(str(p) for p in set(outside.rglob("*")) - before) if outside else []
    internal = rc == 4 or "Traceback" in out or "internal error" in out
    silent = rc == 0 and damaged
    rows.append((name, rc, round(time.time() - t, 1), internal, silent, wrote, out.strip().splitlines()[-1:] if out.strip() else []))

# baseline cases: record a good one first, then damage it
good = project("good"); subprocess.run(GEOM + ["run", f"--model={TINY}", "--spec=specs", "--update", "--no-report"], cwd=good, capture_output=True)
recorded = next((good / "baselines").rglob("s.json"))
text = recorded.read_text()
def baseline_case(name, content: bytes):
    p = project(name); target = p / recorded.relative_to(good); target.parent.mkdir(parents=True); target.write_bytes(content)
    run(name, ["run", f"--model={TINY}", "--spec=specs", "--no-report"], p)
data = json.loads(text)
baseline_case("baseline utf-16", text.encode("utf-16"))
baseline_case("baseline invalid utf-8", b"\xff\xfe\xfa" + text.encode())
for kind, value in (("list", []), ("string", "x"), ("int", 3)):
    d = json.loads(text); d["checks"]["ratio"] = value; baseline_case(f"baseline entry {kind}", json.dumps(d).encode())
baseline_case("baseline huge int", text.replace("{", '{"zz": 1' + "0" * 5000 + ",", 1).encode())
baseline_case("baseline Infinity", text.replace("{", '{"zz": Infinity,', 1).encode())
baseline_case("baseline 1e999", text.replace("{", '{"zz": 1e999,', 1).encode())

# model directory cases
def model_case(name, mutate):
    d = BASE / ("m-" + name.replace(" ", "_")); shutil.copytree(TINY, d); mutate(d)
    p = project("p-" + name.replace(" ", "_"))
    run("model " + name, ["run", f"--model={d}", "--spec=specs", "--no-report", "--no-baseline"], p)
model_case("tokenizer.json invalid utf-8", lambda d: (d / "tokenizer.json").write_bytes(b"\xff\xfe" + (d / "tokenizer.json").read_bytes()))
model_case("tokenizer.json deep nesting", lambda d: (d / "tokenizer.json").write_text("[" * 100000 + "]" * 100000))
model_case("tokenizer.json list", lambda d: (d / "tokenizer.json").write_text("[1, 2]"))
def cfg(d, **kw):
    c = json.loads((d / "config.json").read_text()); c.update(kw); (d / "config.json").write_text(json.dumps(c))
model_case("config hidden_size null", lambda d: cfg(d, hidden_size=None))
model_case("config layers zero", lambda d: cfg(d, num_hidden_layers=0))
model_case("config heads string", lambda d: cfg(d, num_attention_heads="four"))
model_case("config utf-16", lambda d: (d / "config.json").write_bytes((d / "config.json").read_text().encode("utf-16")))
def sharded_bin(d, index):
    (d / "model.safetensors").unlink(); (d / "pytorch_model.bin.index.json").write_text(json.dumps(index))
model_case("bin index without metadata", lambda d: sharded_bin(d, {"weight_map": {"model.embed_tokens.weight": "pytorch_model-00001.bin"}}))
model_case("bin index empty", lambda d: sharded_bin(d, {}))

# adapters
def adapters_case(name, content: bytes):
    p = project("a-" + name.replace(" ", "_")); (p / "specs" / "adapters.yaml").write_bytes(content)  # read beside the specs
    run("adapters " + name, ["run", f"--model={TINY}", "--spec=specs", "--no-report", "--no-baseline"], p)
adapters_case("deep nesting", b"[" * 50000 + b"]" * 50000)
adapters_case("utf-16", "tables: []\n".encode("utf-16"))
TABLE = (b"adapters:\n  - family: mine\n    model_types: [llama]\n    blocks: model.layers\n    embed: model.embed_tokens\n"
         b"    attn: self_attn\n    mlp: mlp\n")
adapters_case("residual_scale not a config key", TABLE + b"    residual_scale: abc\n")
adapters_case("attn and mlp swapped", TABLE.replace(b"attn: self_attn", b"attn: mlp").replace(b"mlp: mlp", b"mlp: self_attn"))
adapters_case("pos_embed on the token embedding", TABLE + b"    position_scheme: learned\n    pos_embed: model.embed_tokens\n")

# output roots through symlinks
outside = BASE / "outside"; outside.mkdir()
p = project("w-reports"); os.symlink(outside, p / "reports")
run("outputs: reports/ is a link outside", ["run", f"--model={TINY}", "--spec=specs", "--no-baseline"], p, outside)
p = project("w-baselines"); os.symlink(outside, p / "baselines")
run("outputs: baselines/ is a link outside (--update)", ["run", f"--model={TINY}", "--spec=specs", "--update", "--no-report"], p, outside)
p = project("w-baseline-file"); (p / "baselines" / "tiny").mkdir(parents=True); os.symlink(outside / "planted.json", p / "baselines" / "tiny" / "s.json")
run("outputs: a baseline file is a link outside (--update)", ["run", f"--model={TINY}", "--spec=specs", "--update", "--no-report"], p, outside)

# trajectory
def trajectory_case(name, state_text=None, cache_mutate=None):
    p = project("t-" + name.replace(" ", "_")); runs = p / "runs"
    for step in (1, 2):
        ck = runs / f"checkpoint-{step}"; shutil.copytree(TINY, ck)
        if state_text is not None: (ck / "trainer_state.json").write_text(state_text)
    args = ["trajectory", str(runs), "--spec=specs/s.yaml", "--report", str(p / "reports" / "t.html")]
    if cache_mutate:
        subprocess.run(GEOM + args, cwd=p, capture_output=True)
        cache_mutate(p / "reports" / "t.cache")
    run("trajectory " + name, args, p, damaged=False)  # measured again / step from the folder name: exit 0 is right
trajectory_case("trainer_state huge int", '{"global_step": 1' + "0" * 5000 + '}')
trajectory_case("trainer_state Infinity", '{"global_step": Infinity}')
trajectory_case("trainer_state deep", "[" * 100000 + "]" * 100000)
def damage_cache(kind):
    def mutate(cache):
        for f in cache.rglob("*.json"):
            if kind == "huge": f.write_text(f.read_text().replace("{", '{"zz": 1' + "0" * 5000 + ",", 1))
            elif kind == "inf": f.write_text(f.read_text().replace("{", '{"zz": Infinity,', 1))
            else: f.write_text("[" * 100000 + "]" * 100000)
    return mutate
for kind in ("huge", "inf", "deep"):
    trajectory_case(f"cache record {kind}", cache_mutate=damage_cache(kind))
p = project("t-cache-link"); runs = p / "runs"
for step in (1, 2): shutil.copytree(TINY, runs / f"checkpoint-{step}")
(p / "reports").mkdir(); os.symlink(outside, p / "reports" / "t.cache")
run("trajectory cache is a link outside", ["trajectory", str(runs), "--spec=specs/s.yaml", "--report", str(p / "reports" / "t.html")], p, outside)

# spec files, as a pull request commits them
SECRET = "AKIAGEOMCHECKCAMPAIGNSECRET"
def spec_case(name, write, args=None, secret_report=False):
    p = project("s-" + str(len(rows)))
    target = p / "specs" / "s.yaml"
    target.unlink()
    write(p, target)
    extra = args if args is not None else ["--spec=specs", "--no-baseline"]
    run("spec " + name, ["run", f"--model={TINY}", *extra], p, env={"AWS_SECRET_ACCESS_KEY": SECRET})
    if secret_report:
        leaked = [str(f) for f in (p / "reports").rglob("*.html") if SECRET in f.read_text(errors="replace")] if (p / "reports").exists() else []
        if leaked:
            name, rc, sec, internal, silent, wrote, tail = rows[-1]
            rows[-1] = (name, rc, sec, internal, True, wrote + leaked, tail)
NAMED = ["--spec=specs/s.yaml", "--no-baseline"]  # named as a file: a folder lists only regular files
spec_case("FIFO as the spec", lambda p, t: os.mkfifo(t), NAMED)
spec_case("linked to /dev/zero", lambda p, t: os.symlink("/dev/zero", t), NAMED)
spec_case("sparse 6 GB", lambda p, t: open(t, "wb").truncate(6 << 30))
spec_case("nested 100,000 deep", lambda p, t: t.write_text("a: " + "[" * 100000 + "]" * 100000))
spec_case("billion laughs", lambda p, t: t.write_text("a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n"
    for i in range(8)) + SPEC))
spec_case("unknown property", lambda p, t: t.write_text(SPEC.replace("first_position_norm", "no_such_property")))
spec_case("surrogate in reason", lambda p, t: t.write_text(SPEC + '    reason: "bad \\udc80 text"\n'))
spec_case("YAML 1.1 octal sequences", lambda p, t: t.write_text(SPEC.replace("sequences: 8", "sequences: 010")))
spec_case("python tag", lambda p, t: t.write_text(SPEC + "    reason: !!python/object/apply:os.system [echo pwned]\n"))
def environ_link(p, t):
    (p / "inputs").mkdir()
    os.symlink("/proc/self/environ", p / "inputs" / "notes.txt")
    t.write_text(SPEC.replace("inputs: {sequences: 8, tokens: 12}", "inputs: {mode: text, source: inputs, sequences: 2, tokens: 16}"))
spec_case("text input linked to /proc/self/environ", environ_link, ["--spec=specs", "--no-baseline", "--report-input-text"], secret_report=True)
def outside_link(p, t):
    (p / "inputs").mkdir()
    secret = BASE / "secret.txt"
    secret.write_text((SECRET + " ") * 500)
    os.symlink(secret, p / "inputs" / "notes.txt")
    t.write_text(SPEC.replace("inputs: {sequences: 8, tokens: 12}", "inputs: {mode: text, source: inputs, sequences: 2, tokens: 16}"))
spec_case("text input linked outside the project", outside_link, ["--spec=specs", "--no-baseline", "--report-input-text"], secret_report=True)

# command-line options
def option_case(name, args, prepare=None):
    p = project("o-" + str(len(rows)))
    if prepare:
        prepare(p)
    run("options " + name, ["run", f"--model={TINY}", "--spec=specs", *args], p)
option_case("--baseline-dir of an unknown user", ["--baseline-dir=~nobody_geomcheck/x"])
option_case("--report under /proc", ["--no-baseline", "--report=/proc/x.html"])
option_case("--update with --no-baseline", ["--update", "--no-baseline"])
option_case("non-ASCII digits", ["--no-baseline", "--token-budget", "\u0663"])
option_case("--seed -1", ["--no-baseline", "--seed", "-1"])
option_case("--device bogus", ["--no-baseline", "--device", "bogus"])
option_case("--token-budget 0", ["--no-baseline", "--token-budget", "0"])
option_case("FIFO as --adapters", ["--no-baseline", "--adapters=fifo.yaml"], lambda p: os.mkfifo(p / "fifo.yaml"))
option_case("a file as --baseline-dir", ["--baseline-dir=pyproject.toml"])
option_case("spec path that does not exist", ["--no-baseline", "--spec=specs/nope.yaml"])

surfaces: dict[str, list] = {}
for row in rows:
    surfaces.setdefault(row[0].split()[0].rstrip(":"), []).append(row)
for name, rc, sec, internal, silent, wrote, tail in rows:
    print(f"{name:45} rc={rc!s:5} {sec:5}s internal={internal!s:5} silent={silent!s:5} wrote_outside={len(wrote)}  {' | '.join(tail)[:160]}")
print("\n| surface | cases | internal errors | silent passes | writes outside | hangs |\n|---|---|---|---|---|---|")
for surface, group in surfaces.items():
    print(f"| {surface} | {len(group)} | {sum(r[3] for r in group)} | {sum(r[4] for r in group)} | {sum(bool(r[5]) for r in group)} | "
          f"{sum(r[1] == 'hang' for r in group)} |")
shutil.rmtree(BASE, ignore_errors=True)
