"""The driver ABI from outside (a driver built with only the public header), the loader's
listing and schemas, and the state commands."""
import json

import jsonschema
import shutil
import subprocess

from conftest import ROOT


def build_hello(dest, *extra):
    cc = shutil.which("cc") or shutil.which("gcc")
    dest.mkdir(exist_ok=True)
    subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                    "-fvisibility=hidden", "-Wl,-z,defs", f"-I{ROOT / 'include'}", *extra,
                    "-o", str(dest / "hello.so"), str(ROOT / "tests/e2e/hello_driver.c")],
                   check=True)
    syms = subprocess.run(["nm", "-D", "--defined-only", str(dest / "hello.so")],
                          capture_output=True, text=True, check=True).stdout
    exported = [l.split()[-1] for l in syms.splitlines() if " T " in l]
    assert exported == ["mle_driver_entry"], exported
    return dest


def test_header_only_driver_applies(work, tmp_path):
    drv = build_hello(tmp_path / "drivers")
    out = tmp_path / "greetings"
    out.mkdir()
    work.write(f'''
    local mle = require("mlengine")
    mle.driver("hello", {{ dir = "{out}" }})
    local g = mle.resource("hello_greeting", "hi", {{ greeting = "hello, world" }})
    mle.output("id", g.id)
    ''')
    r = work.ok("apply", "--auto-approve", "--driver-path", drv)
    files = list(out.iterdir())
    assert len(files) == 1 and files[0].read_text() == "hello, world"
    assert work.run("plan", "--detailed-exitcode", "--driver-path", drv).returncode == 0
    work.ok("destroy", "--auto-approve", "--driver-path", drv)
    assert list(out.iterdir()) == []


def test_env_driver_path(work, tmp_path):
    drv = build_hello(tmp_path / "drivers")
    r = work.ok("drivers", env={"MLENGINE_DRIVER_PATH": str(drv)})
    assert "hello 1.0.0" in r.stdout and "hello_greeting" in r.stdout


def test_same_type_from_two_drivers(work, tmp_path):
    a = build_hello(tmp_path / "a")
    b = tmp_path / "b"
    b.mkdir()
    # Same types under another driver name: the loader must name both files.
    src = (ROOT / "tests/e2e/hello_driver.c").read_text().replace('.name = "hello"', '.name = "hello2"')
    (tmp_path / "hello2.c").write_text(src)
    subprocess.run([shutil.which("cc"), "-std=c11", "-shared", "-fPIC", f"-I{ROOT / 'include'}",
                    "-o", str(b / "hello2.so"), str(tmp_path / "hello2.c")], check=True)
    r = work.run("drivers", "--driver-path", a, "--driver-path", b)
    assert r.returncode == 1
    assert "hello_greeting" in r.stderr and "hello.so" in r.stderr and "hello2.so" in r.stderr


def test_drivers_list_and_schema(work):
    r = work.ok("drivers")
    assert "sim" in r.stdout and "sim_resource" in r.stdout
    assert "local" in r.stdout and "random_password" in r.stdout
    r = work.ok("drivers", "schema", "sim")
    schema = json.loads(r.stdout)
    props = schema["$defs"]["sim_resource"]["properties"]
    assert props["zone"]["x-mlengine-force-new"] is True
    assert props["secret"]["writeOnly"] is True
    assert props["id"]["readOnly"] is True
    # The checked-in schema files are generated from the same tables: one per driver built.
    built = sorted(p.stem for p in (ROOT / "build" / "drivers").glob("*/*.so"))
    files = sorted(p.name.split(".")[0] for p in (ROOT / "schemas" / "drivers").glob("*.schema.json"))
    assert built == files, "run dev/schemas: schemas/drivers does not match the drivers built"
    for name in files:
        checked_in = json.loads((ROOT / "schemas" / "drivers" / f"{name}.schema.json").read_text())
        assert checked_in == json.loads(work.ok("drivers", "schema", name).stdout), \
            f"schemas/drivers/{name}.schema.json is stale: regenerate it with `mlengine drivers schema {name}`"


def test_state_commands(work):
    work.write('''
    local mle = require("mlengine")
    local pw = mle.resource("random_password", "db", { length = 20 })
    mle.resource("sim_resource", "a", { name = "a", secret = pw.result })
    mle.output("password", pw.result, { sensitive = true })
    ''')
    r = work.ok("apply", "--auto-approve")
    assert "password = (sensitive)" in r.stdout
    assert sorted(work.state_list()) == ["random_password.db", "sim_resource.a"]
    shown = json.loads(work.ok("state", "show", "random_password.db").stdout)
    assert shown["attributes"]["result"] == "(sensitive)"
    pulled = json.loads(work.ok("state", "pull").stdout)
    assert pulled["format_version"] == 1 and len(pulled["resources"]) == 2
    jsonschema.validate(pulled, json.loads((ROOT / "schemas/state.schema.json").read_text()))
    work.ok("state", "mv", "sim_resource.a", "sim_resource.b")
    assert sorted(work.state_list()) == ["random_password.db", "sim_resource.b"]
    work.ok("state", "rm", "sim_resource.b")
    assert work.state_list() == ["random_password.db"]
    r = work.run("state", "show", "sim_resource.nope")
    assert r.returncode == 1 and "not in state" in r.stderr


def test_help_everywhere(work):
    for cmd in ("plan", "apply", "destroy", "validate", "render", "import", "drivers", "state",
                "version"):
        r = work.ok(cmd, "--help")
        assert "Usage: mlengine" in r.stdout
    r = work.ok("version")
    assert "driver ABI 1." in r.stdout


def test_render_writes_documents(work):
    work.write('''
    local mle = require("mlengine")
    local a = mle.resource("sim_resource", "a", { name = "a" })
    mle.resource("local_file", "values", {
      filename = "out/values.yaml",
      content = "name: fixed\\nid: " .. a.id .. "\\n",
    })
    ''')
    r = work.ok("render", "--out", "review")
    assert "Rendered 1 file(s)" in r.stdout
    text = (work.path / "review" / "local_file.values" / "values.yaml").read_text()
    assert text == "name: fixed\nid: (known after apply)\n"
    assert not (work.path / "out").exists()  # render writes nothing but the review files
    assert not work.creates()
    work.ok("apply", "--auto-approve")
    work.ok("render", "--out", "review2")
    text = (work.path / "review2" / "local_file.values" / "values.yaml").read_text()
    assert text == f"name: fixed\nid: {work.creates()[0][2]}\n"


def test_render_never_shows_secrets(work):
    work.write('''
    local mle = require("mlengine")
    local pw = mle.resource("random_password", "db", { length = 16 })
    local token = mle.var("token", { sensitive = true })
    mle.resource("local_file", "values", {
      filename = "values.yaml",
      content = "url: postgres://app:" .. pw.result .. "@db\\ntoken: " .. token .. "\\n",
    })
    mle.resource("local_file", "plain", { filename = "plain.txt", content = mle.sensitive("hush-hush") })
    ''')
    v = ["--var", "token=Tok-3321-secret"]
    work.ok("apply", "--auto-approve", *v)
    work.ok("render", "--out", "review", *v)
    text = (work.path / "review" / "local_file.values" / "values.yaml").read_text()
    assert text == "(sensitive)"
    assert (work.path / "review" / "local_file.plain" / "plain.txt").read_text() == "(sensitive)"
    for p in (work.path / "review").rglob("*"):
        if p.is_file():
            assert "Tok-3321-secret" not in p.read_text() and "hush-hush" not in p.read_text()


def test_driver_options_from_resources_of_the_same_apply(work, tmp_path):
    """A driver configured from what this apply creates (as the kubernetes driver is from a
    cluster's endpoint) is initialised once those resources exist; its resources wait."""
    drv = build_hello(tmp_path / "drivers")
    out = tmp_path / "out"
    work.write(f'''
    local mle = require("mlengine")
    local rid = mle.resource("random_id", "dir", {{ byte_length = 4 }})
    local keep = mle.resource("local_file", "keep", {{
      filename = "{out}/" .. rid.hex .. "/.keep", content = "" }})
    mle.driver("hello", {{ dir = mle.format("%s/%s", "{out}", rid.hex) }})
    mle.resource("hello_greeting", "hi", {{ greeting = "hi", depends_on = {{ keep }} }})
    ''')
    r = work.ok("plan", "--driver-path", drv)
    assert "hello_greeting.hi (create)" in r.stdout
    work.ok("apply", "--auto-approve", "--driver-path", drv)
    dirs = [d for d in out.iterdir() if d.is_dir()]
    assert len(dirs) == 1
    greetings = [p for p in dirs[0].iterdir() if p.name.startswith("hello-")]
    assert len(greetings) == 1 and greetings[0].read_text() == "hi"
    assert work.run("plan", "--refresh", "--detailed-exitcode", "--driver-path", drv).returncode == 0


def test_folder_of_multi_document_manifests(work):
    """A folder of manifests, several documents per file: mle.dir + mle.yamldecode_all."""
    m = work.path / "manifests"
    m.mkdir()
    (m / "b-apps.yaml").write_text("kind: Namespace\nname: ml-serving\n---\nkind: Namespace\nname: mlflow\n")
    (m / "a-base.yaml").write_text("kind: Namespace\nname: argo\n")
    (m / "notes.txt").write_text("not yaml")
    work.write('''
    local mle = require("mlengine")
    for _, f in ipairs(mle.dir("manifests", ".yaml")) do
      for i, doc in ipairs(mle.yamldecode_all(mle.file("manifests/" .. f))) do
        mle.resource("sim_resource", doc.name, { name = f .. "#" .. i, value = doc.kind })
      end
    end
    ''')
    r = work.ok("plan", "--json")
    import json as _json
    names = [c["after"]["name"] for c in _json.loads(r.stdout)["changes"]]
    assert names == ["a-base.yaml#1", "b-apps.yaml#1", "b-apps.yaml#2"]
    work.write('local mle = require("mlengine")\nmle.dir("..")\n')
    r = work.run("plan")
    assert r.returncode == 1 and "mle.dir" in r.stderr
