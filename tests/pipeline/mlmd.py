"""Records executions in an ML Metadata store the way TFX's orchestrators do (a `node` context
`<pipeline>.<step>`, OUTPUT events keyed by output name), for tests of what reads them."""

from typing import Dict, Optional

from ml_metadata.proto import metadata_store_pb2 as mlmd


def _type_id(store, kind: str, name: str) -> int:
    put, message = {"context": (store.put_context_type, mlmd.ContextType),
                    "execution": (store.put_execution_type, mlmd.ExecutionType),
                    "artifact": (store.put_artifact_type, mlmd.ArtifactType)}[kind]
    return put(message(name=name))


def _node(store, pipeline: str, step: str) -> mlmd.Context:
    name = f"{pipeline}.{step}"
    found = store.get_context_by_type_and_name("node", name)
    if found:
        return found
    context = mlmd.Context(type_id=_type_id(store, "context", "node"), name=name)
    context.id = store.put_contexts([context])[0]
    return context


def record(store, step: str, outputs: Dict[str, str], pipeline: str = "funnel",
           state=mlmd.Execution.COMPLETE, properties: Optional[Dict[str, Dict]] = None) -> int:
    """Records one execution of `step` with `outputs` (output name -> URI; `properties`:
    output name -> custom int/str properties); returns the execution id."""
    execution = mlmd.Execution(type_id=_type_id(store, "execution", f"test.{step}"), last_known_state=state)
    pairs = []
    for key, uri in outputs.items():
        artifact = mlmd.Artifact(type_id=_type_id(store, "artifact", "TestArtifact"), uri=uri,
                                 state=mlmd.Artifact.LIVE)
        for name, value in ((properties or {}).get(key) or {}).items():
            if isinstance(value, int):
                artifact.custom_properties[name].int_value = value
            else:
                artifact.custom_properties[name].string_value = value
        event = mlmd.Event(type=mlmd.Event.OUTPUT)
        event.path.steps.add().key = key
        event.path.steps.add().index = 0
        pairs.append((artifact, event))
    execution_id, _, _ = store.put_execution(execution, pairs, [_node(store, pipeline, step)])
    return execution_id
