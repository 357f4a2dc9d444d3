"""The TF Serving deployment files agree with each other and with what TF Serving 2.16 accepts.

serving/models.config, serving/batching_parameters.pbtxt, serving/deploy/docker-compose.yml,
serving/deploy/kubernetes.yaml and the version-label rewriter (serving/set_version_labels.py).
"""

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving import set_version_labels as svl

REPO = Path(__file__).resolve().parents[2]
SERVING = REPO / "serving"
MODELS_CONFIG = SERVING / "models.config"
BATCHING = SERVING / "batching_parameters.pbtxt"
COMPOSE = SERVING / "deploy" / "docker-compose.yml"
KUBERNETES = SERVING / "deploy" / "kubernetes.yaml"

IMAGE = "tensorflow/serving:2.16.1-gpu"
MODEL_NAME = "funnel"
BASE_PATH = "/models/funnel"
GRPC_PORT, REST_PORT = 8500, 8501
STATUS_PATH = "/v1/models/funnel"
CANDIDATES_PER_REQUEST = 200  # a ranking request's candidates: one serving_default call

# tensorflow_serving's session_bundle_config.proto is not in the pip package: the fields of
# BatchingParameters as of TF Serving 2.16.1 (name -> type). Wrapper types need the
# `name { value: x }` text form; a bare `name: x` is a parse error in TF Serving too.
BATCHING_FIELDS = {
    "max_batch_size": "Int64Value",
    "batch_timeout_micros": "Int64Value",
    "max_enqueued_batches": "Int64Value",
    "num_batch_threads": "Int64Value",
    "thread_pool_name": "StringValue",
    "enable_large_batch_splitting": "BoolValue",
    "max_execution_batch_size": "Int64Value",
    "allowed_batch_sizes": "repeated int64",
    "pad_variable_length_inputs": "bool",
}


# ---------------------------------------------------------------- helpers

def _batching_parameters_class():
    F = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    proto = descriptor_pb2.FileDescriptorProto(name="funnel_test/batching.proto", package="funnel_test",
                                               syntax="proto3", dependency=[wrappers.name])
    message = proto.message_type.add(name="BatchingParameters")
    for number, (name, kind) in enumerate(BATCHING_FIELDS.items(), start=1):
        field = message.field.add(name=name, number=number, label=F.LABEL_OPTIONAL)
        if kind.endswith("Value"):
            field.type, field.type_name = F.TYPE_MESSAGE, f".google.protobuf.{kind}"
        elif kind == "repeated int64":
            field.type, field.label = F.TYPE_INT64, F.LABEL_REPEATED
        else:
            field.type = F.TYPE_BOOL
    pool.Add(proto)
    return message_factory.MessageFactory(pool).GetPrototype(pool.FindMessageTypeByName("funnel_test.BatchingParameters"))


BatchingParameters = _batching_parameters_class()


def parse_batching(text: str):
    """Each statement is `name { value: x }` (wrapper fields) or `name: x` (plain fields),
    with names from BATCHING_FIELDS; parsed by protobuf's text format as TF Serving does."""
    statements = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    for statement in statements:
        match = re.fullmatch(r"(\w+)\s*(?::\s*\S+|\{\s*value:\s*\S+\s*\})", statement)
        assert match, f"not `field: value` or `field {{ value: x }}`: {statement!r}"
        assert match.group(1) in BATCHING_FIELDS, f"{match.group(1)} is not a BatchingParameters field"
    return text_format.Parse(text, BatchingParameters())


def parse_models_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def _without_label_versions(config):
    """A copy with each label's version set to 0 (deploy tooling rewrites them)."""
    copy = model_server_config_pb2.ModelServerConfig()
    copy.CopyFrom(config)
    for model in copy.model_config_list.config:
        for label in list(model.version_labels):
            model.version_labels[label] = 0
    return copy


def flags(args) -> dict:
    out = {}
    for arg in args:
        assert arg.startswith("--") and "=" in arg, f"flags are written --name=value: {arg!r}"
        name, value = arg[2:].split("=", 1)
        assert name not in out, f"--{name} given twice"
        out[name] = value
    return out


def _env_default(value: str) -> str:
    """`${VAR:-default}` -> default (what compose uses when VAR is unset)."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def _quantity(value) -> float:
    """Kubernetes quantities: "500m", "4", 8Gi, 512Mi."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


@pytest.fixture(scope="module")
def models_config():
    return parse_models_config(MODELS_CONFIG.read_text())


@pytest.fixture(scope="module")
def batching():
    return parse_batching(BATCHING.read_text())


@pytest.fixture(scope="module")
def compose():
    docs = list(yaml.safe_load_all(COMPOSE.read_text()))
    assert len(docs) == 1
    return docs[0]["services"]["funnel-serving"]


@pytest.fixture(scope="module")
def k8s():
    docs = [d for d in yaml.safe_load_all(KUBERNETES.read_text()) if d]
    by_kind = {}
    for doc in docs:
        assert doc["kind"] not in by_kind, f"two {doc['kind']} objects"
        by_kind[doc["kind"]] = doc
    assert {"ConfigMap", "Deployment", "Service", "PersistentVolumeClaim"} <= set(by_kind)
    return by_kind


@pytest.fixture(scope="module")
def container(k8s):
    containers = k8s["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _port_number(container, port):
    named = {p["name"]: p["containerPort"] for p in container["ports"] if "name" in p}
    return named.get(port, port)


# ---------------------------------------------------------------- models.config

def test_models_config_serves_funnel_with_two_versions_and_labels(models_config):
    assert models_config.WhichOneof("config") == "model_config_list"
    (model,) = models_config.model_config_list.config
    assert model.name == MODEL_NAME
    assert model.base_path == BASE_PATH
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 2
    assert set(model.version_labels) == {"stable", "canary"}
    assert all(v > 0 for v in model.version_labels.values())


def test_models_config_documents_the_label_rewrite():
    text = MODELS_CONFIG.read_text()
    assert "serving.set_version_labels" in text
    assert "--allow_version_labels_for_unavailable_models" in text


# ---------------------------------------------------------------- batching_parameters.pbtxt

def test_batching_parser_is_strict():
    assert parse_batching("max_batch_size { value: 256 }\npad_variable_length_inputs: true\n").max_batch_size.value == 256
    for bad in ("max_batch_size: 256",              # wrapper field without `{ value: }`
                "max_batch_sizes { value: 256 }",   # unknown field
                "pad_variable_length_inputs { value: true }",
                "num_batch_threads { value: four }"):
        with pytest.raises((AssertionError, text_format.ParseError)):
            parse_batching(bad)


def test_batching_parameters_are_sensible_for_the_gpu(batching):
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        assert batching.HasField(name), f"{name} is left to TF Serving's default"
    # A ranking request's ~200 examples must fit in one batch, else TF Serving rejects it.
    assert batching.max_batch_size.value >= CANDIDATES_PER_REQUEST
    # A rank batch is max_batch_size requests x ~200 candidates: keep it GPU-sized.
    assert batching.max_batch_size.value * CANDIDATES_PER_REQUEST <= 250_000
    assert 0 < batching.batch_timeout_micros.value <= 10_000  # bounded extra latency
    assert 1 <= batching.num_batch_threads.value <= 16
    assert batching.max_enqueued_batches.value >= batching.num_batch_threads.value
    # Padding would corrupt `rank` sequences (TF Serving pads with the first value, not "").
    assert re.search(r"^pad_variable_length_inputs:\s*false\s*$", BATCHING.read_text(), re.M)
    assert not batching.pad_variable_length_inputs
    sizes = list(batching.allowed_batch_sizes)
    if sizes:
        assert sizes == sorted(set(sizes))
        limit = (batching.max_execution_batch_size.value if batching.enable_large_batch_splitting.value
                 else batching.max_batch_size.value)
        assert sizes[-1] == limit


# ---------------------------------------------------------------- docker-compose

def test_compose_runs_the_gpu_image_with_the_config_files(compose, models_config):
    assert compose["image"] == IMAGE
    assert compose["entrypoint"] == ["/usr/bin/tensorflow_model_server"]
    f = flags(compose["command"])
    assert f["port"] == str(GRPC_PORT) and f["rest_api_port"] == str(REST_PORT)
    assert f["model_config_file_poll_wait_seconds"] == "60"
    assert f["enable_batching"] == "true" and f["enable_model_warmup"] == "true"
    assert f["allow_version_labels_for_unavailable_models"] == "true"
    assert "model_name" not in f and "model_base_path" not in f  # models.config decides

    volumes = {}
    for volume in compose["volumes"]:
        source, target, *mode = _env_default(volume).split(":")
        assert mode == ["ro"], f"{target} should be read-only"
        volumes[target] = (COMPOSE.parent / source).resolve()
    base_path = models_config.model_config_list.config[0].base_path
    assert volumes[base_path] == REPO / "work" / "serving"  # `funnel run`'s WORK/serving by default
    # Both config files come from the mounted directory, under the names the flags use.
    for flag, local in (("model_config_file", MODELS_CONFIG), ("batching_parameters_file", BATCHING)):
        directory, name = os.path.split(f[flag])
        assert volumes[directory] / name == local


def test_compose_ports_gpu_and_healthcheck(compose):
    # plaintext, unauthenticated: published on the host's loopback unless FUNNEL_BIND_ADDRESS says otherwise
    assert all(port.startswith("${FUNNEL_BIND_ADDRESS:-127.0.0.1}:") for port in compose["ports"])
    assert sorted(_env_default(port) for port in compose["ports"]) == sorted(
        [f"127.0.0.1:{GRPC_PORT}:{GRPC_PORT}", f"127.0.0.1:{REST_PORT}:{REST_PORT}"])
    (device,) = compose["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == 1
    test = compose["healthcheck"]["test"]
    assert test[0] == "CMD" and test[-1] == f"http://localhost:{REST_PORT}{STATUS_PATH}"


# ---------------------------------------------------------------- kubernetes

def test_k8s_container_matches_compose(container, compose):
    assert container["image"] == IMAGE
    assert container["command"] == compose["entrypoint"]
    k8s_flags, compose_flags = flags(container["args"]), flags(compose["command"])
    assert k8s_flags.pop("enable_grpc_healthcheck_service") == "true"  # for the liveness probe
    assert k8s_flags == compose_flags
    assert sorted(p["containerPort"] for p in container["ports"]) == [GRPC_PORT, REST_PORT]


def test_k8s_requests_one_gpu_and_bounded_resources(container, compose):
    resources = container["resources"]
    gpus = compose["deploy"]["resources"]["reservations"]["devices"][0]["count"]
    assert int(resources["limits"]["nvidia.com/gpu"]) == gpus == 1
    for name in ("cpu", "memory"):
        assert 0 < _quantity(resources["requests"][name]) <= _quantity(resources["limits"][name])


def test_k8s_readiness_probe_checks_model_status(container):
    ready = container["readinessProbe"]["httpGet"]
    assert ready["path"] == STATUS_PATH
    assert _port_number(container, ready["port"]) == REST_PORT
    assert "livenessProbe" in container
    assert container["livenessProbe"] != container["readinessProbe"]


def test_k8s_volumes_carry_models_and_config(k8s, container, models_config):
    pod = k8s["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    base_path = models_config.model_config_list.config[0].base_path
    models = volumes[mounts[base_path]["name"]]
    assert models["persistentVolumeClaim"]["claimName"] == k8s["PersistentVolumeClaim"]["metadata"]["name"]

    f = flags(container["args"])
    config_dir = os.path.dirname(f["model_config_file"])
    assert os.path.dirname(f["batching_parameters_file"]) == config_dir
    mount = mounts[config_dir]
    assert "subPath" not in mount  # subPath mounts never see ConfigMap updates
    config_map = k8s["ConfigMap"]
    assert volumes[mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    assert set(config_map["data"]) == {os.path.basename(f["model_config_file"]),
                                      os.path.basename(f["batching_parameters_file"])}


def test_k8s_config_map_matches_the_repository_files(k8s, container, models_config, batching):
    f = flags(container["args"])
    data = k8s["ConfigMap"]["data"]
    inline = parse_models_config(data[os.path.basename(f["model_config_file"])])
    # Labels may have been rewritten in either copy: compare everything but their versions.
    assert _without_label_versions(inline) == _without_label_versions(models_config)
    assert parse_batching(data[os.path.basename(f["batching_parameters_file"])]) == batching


def test_k8s_service_exposes_grpc_and_rest(k8s, container):
    service = k8s["Service"]["spec"]
    pod_labels = k8s["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    assert k8s["Deployment"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ports = {p["port"]: _port_number(container, p["targetPort"]) for p in service["ports"]}
    assert ports == {GRPC_PORT: GRPC_PORT, REST_PORT: REST_PORT}


# ---------------------------------------------------------------- version-label rewriter

def _serving_dir(root: Path, versions, extra=()) -> Path:
    for v in versions:
        (root / str(v) / "variables").mkdir(parents=True)
        (root / str(v) / "saved_model.pb").write_bytes(b"")
    for name in extra:
        (root / name).mkdir()
    return root


def test_newest_labels_pick_the_two_newest_integer_versions(tmp_path):
    d = _serving_dir(tmp_path, [1700000000, 1700000100, 999], extra=[".tmp-1800000000", "latest"])
    (d / "1900000000").write_text("a file, not a version")
    assert svl.list_versions(str(d)) == [999, 1700000000, 1700000100]
    assert svl.newest_labels(str(d)) == {"stable": 1700000000, "canary": 1700000100}


def test_newest_labels_compare_numbers_not_strings(tmp_path):
    d = _serving_dir(tmp_path, [99, 1000, 999])
    assert svl.newest_labels(str(d)) == {"stable": 999, "canary": 1000}


def test_one_version_is_both_stable_and_canary(tmp_path):
    d = _serving_dir(tmp_path, [1700000000], extra=[".tmp-1700000100"])
    assert svl.newest_labels(str(d)) == {"stable": 1700000000, "canary": 1700000000}


@pytest.mark.parametrize("staging_only", [True, False])
def test_no_versions_is_a_clear_error(tmp_path, staging_only):
    d = _serving_dir(tmp_path, [], extra=[".tmp-1700000000"] if staging_only else [])
    with pytest.raises(svl.NoVersionsError, match=rf"no model versions in {re.escape(str(d))}"):
        svl.newest_labels(str(d))
    with pytest.raises(svl.NoVersionsError, match="does not exist"):
        svl.newest_labels(str(d / "missing"))


def test_rewrite_keeps_everything_but_the_labels(tmp_path, models_config):
    config = tmp_path / "models.config"
    shutil.copy(MODELS_CONFIG, config)
    svl.rewrite_config(str(config), {"stable": 1700000000, "canary": 1700000100})
    text = config.read_text()
    rewritten = parse_models_config(text)
    assert dict(rewritten.model_config_list.config[0].version_labels) == {"stable": 1700000000, "canary": 1700000100}
    assert _without_label_versions(rewritten) == _without_label_versions(models_config)
    header = MODELS_CONFIG.read_text().split("model_config_list")[0]
    assert text.startswith(header)  # the comments survive
    svl.rewrite_config(str(config), {"stable": 1700000000, "canary": 1700000100})
    assert config.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["models.config"]  # no temporary left behind


def test_cli_sets_labels_from_the_serving_dir(tmp_path, capsys):
    serving = _serving_dir(tmp_path / "serving", [1700000000, 1700000100, 1700000200])
    out = tmp_path / "out.config"
    assert svl.main(["--config", str(MODELS_CONFIG), "--serving-dir", str(serving), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == {"stable": 1700000100, "canary": 1700000200}
    assert dict(parse_models_config(out.read_text()).model_config_list.config[0].version_labels) == {
        "stable": 1700000100, "canary": 1700000200}

    # Explicit versions (promote / roll back) are checked against the serving dir.
    assert svl.main(["--config", str(out), "--serving-dir", str(serving), "--stable", "1700000200", "--canary", "1700000200"]) == 0
    assert svl.main(["--config", str(out), "--serving-dir", str(serving), "--stable", "5", "--canary", "1700000200"]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert svl.main(["--config", str(out), "--serving-dir", str(empty)]) == 2
    assert "no model versions" in capsys.readouterr().err
    assert dict(parse_models_config(out.read_text()).model_config_list.config[0].version_labels) == {
        "stable": 1700000200, "canary": 1700000200}
