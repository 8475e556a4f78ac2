"""Decisions of the cmdplan and certprof workflows (workflows.md §5 and §6) against in-memory
stand-ins for the engine and the stores. The runs on the engine are in
tests/integration/test_cmdplan.py."""

from __future__ import annotations

import plistlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nanocmd_core.mdm.checkin import Authenticate, TokenUpdate
from nanocmd_core.mdm.commands import CertificateList, DeviceConfigured, InstallApplication, InstallProfile
from nanocmd_core.mdm.responses import CertificateListResponse, CommandResponse, parse_response
from nanocmd_core.subsystems.cmdplan.storage import CommandPlan, MemoryCommandPlanStore
from nanocmd_core.workflow import (
    Event,
    EventFlag,
    EventsNotSupportedError,
    IncorrectCommandTypeError,
    IncorrectContextTypeError,
    MDMContext,
    StepResult,
    StepResultCommandLenMismatchError,
    StepStart,
    TimeoutNotUsedError,
    UnknownStepNameError,
    WorkflowError,
)
from nanocmd_core.workflows.certprof import (
    CertProfContext,
    CertProfWorkflow,
    Criteria,
    Filter,
    filter_certificates,
    replace_text,
    should_replace,
)
from nanocmd_core.workflows.cmdplan import (
    CommandPlanWorkflow,
    device_configured_skip_reason,
    expand,
    resolve_reference,
)
from tests.fakes.reports import error_report, report
from tests.fakes.stores import Enqueued, MemoryProfiles

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "testdata" / "nanocmd"
CERTPROF_DATA = SHARED / "workflow" / "certprof" / "testdata"


def mobileconfig(identifier: str, *strings: str) -> bytes:
    """A configuration profile per Apple's schema, with ``strings`` inside a payload."""
    return plistlib.dumps(
        {
            "PayloadType": "Configuration",
            "PayloadVersion": 1,
            "PayloadIdentifier": identifier,
            "PayloadUUID": "5E4B9B4C-3A7F-4E4B-9C2F-0F4F0A6D1C11",
            "PayloadDisplayName": identifier,
            "PayloadContent": [
                {
                    "PayloadType": "com.apple.security.scep",
                    "PayloadVersion": 1,
                    "PayloadIdentifier": identifier + ".scep",
                    "PayloadUUID": "0C3C4D84-0D67-4A55-9E0D-2B5D0B8C9F22",
                    "PayloadContent": {"URL": "https://scep.example/scep", "Subject": [list(strings)]},
                }
            ],
        }
    )


def der_certificate(common_name: str, not_after: datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=400))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def typed(request_type: str, raw: bytes) -> CommandResponse:
    return parse_response(request_type, raw)


def payload_of(command: Any) -> dict[str, Any]:
    command_dict: dict[str, Any] = plistlib.loads(command.to_plist())["Command"]
    return command_dict


# --- cmdplan: parameter expansion (§5.3) ----------------------------------------------------


@pytest.mark.parametrize(
    ("template", "params", "expected"),
    [
        # the Go unit test
        ("a", {}, "a"),
        ("a${b}c", {}, "ac"),
        ("a${b:x}c", {}, "axc"),
        ("a${b:x}c", {"b": "g"}, "agc"),
        ("a${b:x:1}c", {}, "ax:1c"),
        # the documentation example
        ("cmdplan_${group:fallback}", {"group": "staff"}, "cmdplan_staff"),
        ("cmdplan_${group:fallback}", {}, "cmdplan_fallback"),
        # present but empty beats the fallback
        ("p_${group:fallback}", {"group": ""}, "p_"),
        # ${c} with a special character or digit
        ("x${*}y", {"*": "S"}, "xSy"),
        ("x${1}y", {"1": "one"}, "xoney"),
        # everything up to the first }
        ("x${a}b}y", {"a": "A"}, "xAb}y"),
        ("x${*a}y", {"*a": "SA"}, "xSAy"),
        # invalid syntax is eaten
        ("a${}b", {}, "ab"),
        ("a${b", {"b": "B"}, "ab"),
        ("${a $b", {"b": "B"}, "a B"),  # Go keeps scanning after an unclosed ${
        # single-character references
        ("$$", {"$": "D"}, "D"),
        ("$1ab", {"1": "Z"}, "Zab"),
        ("a$-b", {}, "ab"),
        # bare names: letters, digits and _
        ("$ab_9-c", {"ab_9": "Q"}, "Q-c"),
        ("$group:fb", {}, ":fb"),  # a bare name cannot carry a fallback
        # a kept dollar
        ("cost$", {}, "cost$"),
        ("a$%b", {}, "a$%b"),
        ("a$ b", {}, "a$ b"),
        ("a$é", {}, "a$é"),
        ("", {}, ""),
    ],
)
def test_expand(template: str, params: dict[str, str], expected: str) -> None:
    assert expand(template, params) == expected


def test_resolve_reference_splits_at_the_first_colon() -> None:
    assert resolve_reference("a:b:c", {}) == "b:c"
    assert resolve_reference("a:b:c", {"a": "v"}) == "v"
    assert resolve_reference("a:", {}) == ""
    assert resolve_reference("a", {"a:": "no"}) == ""


# --- cmdplan: start (§5.4) ------------------------------------------------------------------


@pytest.fixture
def cmdplan() -> tuple[CommandPlanWorkflow, Enqueued, MemoryCommandPlanStore, MemoryProfiles]:
    enqueued, plans = Enqueued(), MemoryCommandPlanStore()
    profiles = MemoryProfiles(p1=mobileconfig("com.example.p1"), p2=mobileconfig("com.example.p2"))
    return CommandPlanWorkflow(enqueued, plans, profiles), enqueued, plans, profiles


def enrollment(awaiting: bool) -> Event:
    return Event(EventFlag.ENROLLMENT, TokenUpdate(UDID="D1", AwaitingConfiguration=awaiting))


def start(context: Any, ids: list[str] | None = None, **kwargs: Any) -> StepStart:
    return StepStart(instance_id="i", ids=ids or ["D1"], context=context, **kwargs)


def test_cmdplan_context_is_a_string_for_every_step(cmdplan: Any) -> None:
    workflow = cmdplan[0]
    for step in ("", "x"):
        codec = workflow.context_codec(step)
        assert codec.decode(b"plan") == "plan" and codec.empty() == ""


@pytest.mark.parametrize("context", ["", None])
def test_cmdplan_needs_a_name(cmdplan: Any, context: Any) -> None:
    with pytest.raises(WorkflowError, match=r"^missing cmdplan name$"):
        cmdplan[0].start(start(context))


def test_cmdplan_context_of_another_type(cmdplan: Any) -> None:
    with pytest.raises(IncorrectContextTypeError):
        cmdplan[0].start(start(["plan"]))


def test_cmdplan_unknown_plan(cmdplan: Any) -> None:
    with pytest.raises(WorkflowError, match=r"^retrieving cmdplan: key not found: plan_fallback$"):
        cmdplan[0].start(start("plan_${group:fallback}"))


def test_cmdplan_name_expanded_from_mdm_params(cmdplan: Any) -> None:
    workflow, enqueued, plans, _ = cmdplan
    plans.store("plan_staff", CommandPlan(manifest_urls=["https://a.example/m.plist"]))
    workflow.start(start("plan_${group:fallback}", mdm_context=MDMContext({"group": "staff"})))
    assert len(enqueued.steps) == 1


def test_cmdplan_commands_in_order_for_all_ids(cmdplan: Any) -> None:
    workflow, enqueued, plans, profiles = cmdplan
    plan = CommandPlan(
        profile_names=["p2", "p1", "p2"],
        manifest_urls=["https://a.example/1.plist", "https://a.example/2.plist"],
        device_configured=True,
    )
    plans.store("plan", plan)
    workflow.start(start("plan", ids=["D1", "D2"], event=enrollment(True)))
    [(name, step)] = enqueued.steps
    assert name == "io.micromdm.wf.cmdplan.v1"
    assert step.ids == ["D1", "D2"] and step.name == "" and step.context is None
    kinds = [type(c) for c in step.commands]
    assert kinds == [InstallProfile] * 3 + [InstallApplication] * 2 + [DeviceConfigured]
    p2, p1, p2again, app1, app2, configured = step.commands
    assert isinstance(p2, InstallProfile) and p2.payload == profiles.raw["p2"]
    assert isinstance(p1, InstallProfile) and p1.payload == profiles.raw["p1"]
    assert isinstance(p2again, InstallProfile) and p2again.payload == profiles.raw["p2"]
    assert payload_of(app1) == {
        "RequestType": "InstallApplication",
        "ManifestURL": "https://a.example/1.plist",
        "ManagementFlags": 1,
    }
    assert payload_of(app2)["ManifestURL"] == "https://a.example/2.plist"
    assert payload_of(configured) == {"RequestType": "DeviceConfigured"}
    assert payload_of(p1)["Payload"] == profiles.raw["p1"]
    assert len({c.command_uuid for c in step.commands}) == 6


def test_cmdplan_missing_profile(cmdplan: Any) -> None:
    workflow, enqueued, plans, _ = cmdplan
    plans.store("plan", CommandPlan(profile_names=["p1", "gone"], manifest_urls=["https://x/m"]))
    with pytest.raises(
        WorkflowError,
        match=r"^creating commands from cmdplan: retrieving profiles: profile not found: gone$",
    ):
        workflow.start(start("plan"))
    assert enqueued.steps == []


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (None, "empty event"),
        (
            Event(EventFlag.TOKEN_UPDATE, TokenUpdate(AwaitingConfiguration=True)),
            "event type mismatch: TokenUpdate",
        ),
        (Event(EventFlag.IDLE_NOT_STARTED_SINCE), "event type mismatch: IdleNotStartedSince"),
        (Event(EventFlag.ENROLLMENT, Authenticate()), "event data type mismatch"),
        (Event(EventFlag.ENROLLMENT, None), "event data type mismatch"),
        (enrollment(False), "not awaiting configuration"),
        (enrollment(True), None),
    ],
)
def test_device_configured_only_for_enrollments_awaiting_configuration(
    cmdplan: Any, event: Event | None, reason: str | None
) -> None:
    assert device_configured_skip_reason(event) == reason
    workflow, enqueued, plans, _ = cmdplan
    plans.store("plan", CommandPlan(manifest_urls=["https://x/m"], device_configured=True))
    workflow.start(start("plan", event=event))
    [(_, step)] = enqueued.steps
    sent_configured = any(isinstance(c, DeviceConfigured) for c in step.commands)
    assert sent_configured == (reason is None)


@pytest.mark.parametrize("flag", [False, None])
def test_device_configured_not_requested(cmdplan: Any, flag: bool | None) -> None:
    workflow, enqueued, plans, _ = cmdplan
    plans.store("plan", CommandPlan(profile_names=["p1"], device_configured=flag))
    workflow.start(start("plan", event=enrollment(True)))
    [(_, step)] = enqueued.steps
    assert [type(c) for c in step.commands] == [InstallProfile]


@pytest.mark.parametrize(
    "plan",
    [CommandPlan(), CommandPlan(profile_names=[], manifest_urls=[]), CommandPlan(device_configured=True)],
)
def test_cmdplan_with_nothing_to_send(cmdplan: Any, plan: CommandPlan) -> None:
    workflow, enqueued, plans, _ = cmdplan
    plans.store("plan", plan)
    with pytest.raises(WorkflowError, match=r"^no commands to queue$"):
        workflow.start(start("plan"))  # an API start never sends DeviceConfigured
    assert enqueued.steps == []


def test_cmdplan_device_configured_alone_on_enrollment(cmdplan: Any) -> None:
    workflow, enqueued, plans, _ = cmdplan
    plans.store("plan", CommandPlan(device_configured=True))
    workflow.start(start("plan", event=enrollment(True)))
    [(_, step)] = enqueued.steps
    assert [type(c) for c in step.commands] == [DeviceConfigured]


# --- cmdplan: completion, timeout, events (§5.5, §5.6) --------------------------------------


@pytest.mark.parametrize("step_name", ["", "anything"])
def test_cmdplan_completion_always_ends_quietly(cmdplan: Any, step_name: str) -> None:
    workflow, enqueued, _, _ = cmdplan
    results = [
        typed("InstallProfile", report("U1", "D1")),
        typed("InstallApplication", error_report("U2", "D1")),
        typed("DeviceConfigured", report("U3", "D1", status="CommandFormatError")),
    ]
    workflow.step_completed(StepResult(instance_id="i", id="D1", name=step_name, command_results=results))
    workflow.step_completed(StepResult(instance_id="i", id="D1", name=step_name))
    assert enqueued.steps == []


def test_cmdplan_timeouts_and_events_unsupported(cmdplan: Any) -> None:
    workflow = cmdplan[0]
    with pytest.raises(TimeoutNotUsedError):
        workflow.step_timeout(StepResult(instance_id="i", id="D1"))
    with pytest.raises(EventsNotSupportedError):
        workflow.event(enrollment(True), "D1", None)
    assert workflow.config is None or workflow.config.exclusive


# --- certprof: context (§6.2) ---------------------------------------------------------------

GO_CONTEXT = (
    b'{"criteria":{"always_replace":true},"filter":{"cn_prefix":"?Error"},"profile":"scep",'
    b'"text_replacements":{"%CN%":"324429DE-46B4-4209-AF95-82D9D8942A0E",'
    b'"%CHAL%":"D6E71C89-4831-4B88-9F1F-83714D526C63"}}'
)


@pytest.fixture
def certprof() -> tuple[CertProfWorkflow, Enqueued, MemoryProfiles]:
    enqueued = Enqueued()
    profiles = MemoryProfiles(scep=mobileconfig("com.example.scep", "CN", "%CN%", "%CHAL%"))
    return CertProfWorkflow(enqueued, profiles), enqueued, profiles


def decode(workflow: CertProfWorkflow, raw: bytes, step: str = "") -> Any:
    codec = workflow.context_codec(step)
    return codec.decode(raw) if raw else codec.empty()


def test_certprof_context_decodes_like_go(certprof: Any) -> None:
    workflow = certprof[0]
    ctx = decode(workflow, GO_CONTEXT)
    assert ctx == CertProfContext(
        profile="scep",
        filter=Filter(cn_prefix="?Error"),
        criteria=Criteria(always_replace=True),
        text_replacements={
            "%CN%": "324429DE-46B4-4209-AF95-82D9D8942A0E",
            "%CHAL%": "D6E71C89-4831-4B88-9F1F-83714D526C63",
        },
    )
    # the same decoder for every step; Go's case-insensitive keys, unknown keys ignored
    other = decode(
        workflow, b'{"Profile":"p","FILTER":{"CN_Prefix":"x"},"extra":1,"criteria":null}', "profile"
    )
    assert other == CertProfContext(profile="p", filter=Filter(cn_prefix="x"))
    # a round trip through the codec keeps "no criteria" distinct from "{}"
    codec = workflow.context_codec("")
    assert codec.decode(codec.encode(other)).criteria is None


@pytest.mark.parametrize(
    "raw", [b'{"profile": 1, "filter": {}}', b'{"profile":"p","filter":{"allow_non_identity":"yes"}}']
)
def test_certprof_context_types_are_strict(certprof: Any, raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode(certprof[0], raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "validating context: empty profile name provided"),
        (b"null", "validating context: empty profile name provided"),
        (b'{"filter":{}}', "validating context: empty profile name provided"),
        (b'{"profile":"scep"}', "validating context: empty filter"),
        (b'{"profile":"scep","filter":null}', "validating context: empty filter"),
    ],
)
def test_certprof_start_validates_context(certprof: Any, raw: bytes, message: str) -> None:
    workflow, enqueued, _ = certprof
    with pytest.raises(WorkflowError, match=f"^{message}$"):
        workflow.start(start(decode(workflow, raw)))
    assert enqueued.steps == []


def test_certprof_start_without_context_or_of_another_type(certprof: Any) -> None:
    workflow = certprof[0]
    with pytest.raises(WorkflowError, match=r"^validating context: nil context$"):
        workflow.start(start(None))
    with pytest.raises(IncorrectContextTypeError):
        workflow.start(start("scep"))


def test_certprof_does_not_check_the_profile_at_start(certprof: Any) -> None:
    workflow, enqueued, profiles = certprof
    workflow.start(start(decode(workflow, b'{"profile":"nope","filter":{}}')))
    assert len(enqueued.steps) == 1 and profiles.reads == []


# --- certprof: start (§6.3) -----------------------------------------------------------------


def test_certprof_start_lists_managed_certificates(certprof: Any) -> None:
    workflow, enqueued, _ = certprof
    ctx = decode(workflow, GO_CONTEXT)
    workflow.start(start(ctx, ids=["D1", "D2"]))
    [(name, step)] = enqueued.steps
    assert name == "io.micromdm.wf.certprof.v1"
    assert step.ids == ["D1", "D2"] and step.name == "" and step.context == ctx
    [command] = step.commands
    assert isinstance(command, CertificateList)
    assert payload_of(command) == {"RequestType": "CertificateList", "ManagedOnly": True}


def test_certprof_start_no_managed_only_omits_the_key(certprof: Any) -> None:
    workflow, enqueued, _ = certprof
    workflow.start(start(decode(workflow, b'{"profile":"scep","filter":{},"no_managed_only":true}')))
    [(_, step)] = enqueued.steps
    assert payload_of(step.commands[0]) == {"RequestType": "CertificateList"}


# --- certprof: certificate list completion (§6.4) -------------------------------------------


def cert_item(cn: str, identity: bool = True, not_after: datetime | None = None) -> dict[str, Any]:
    when = not_after or datetime.now(UTC) + timedelta(days=365)
    return {"CommonName": cn, "IsIdentity": identity, "Data": der_certificate(cn, when)}


def cert_list(*items: dict[str, Any], status: str = "Acknowledged") -> CommandResponse:
    return typed("CertificateList", report("CL", "D1", status=status, CertificateList=list(items)))


def completed(
    workflow: CertProfWorkflow, context: bytes | None, *responses: CommandResponse, name: str = ""
) -> StepResult:
    """A completion as the engine hands it over: the stored context decoded by the codec."""
    ctx = None if context is None else decode(workflow, context, name)
    return StepResult(instance_id="i", id="D1", name=name, context=ctx, command_results=list(responses))


def ctx_json(criteria: str | None = None, flt: str = "{}", extra: str = "") -> bytes:
    crit = f',"criteria":{criteria}' if criteria is not None else ""
    return f'{{"profile":"scep","filter":{flt}{crit}{extra}}}'.encode()


def installed_payload(enqueued: Enqueued) -> bytes:
    [(_, step)] = enqueued.steps
    assert step.name == "profile" and step.ids == ["D1"] and step.context is None
    [command] = step.commands
    assert isinstance(command, InstallProfile)
    return command.payload


def test_certprof_list_result_count(certprof: Any) -> None:
    workflow = certprof[0]
    for responses in ([], [cert_list(), cert_list()]):
        with pytest.raises(StepResultCommandLenMismatchError):
            workflow.step_completed(completed(workflow, ctx_json(), *responses))


def test_certprof_list_result_type(certprof: Any) -> None:
    workflow = certprof[0]
    with pytest.raises(IncorrectCommandTypeError):
        workflow.step_completed(completed(workflow, ctx_json(), typed("InstallProfile", report("U", "D1"))))


def test_certprof_list_error_response(certprof: Any) -> None:
    workflow, enqueued, _ = certprof
    response = typed("CertificateList", error_report("CL", "D1", code=-1, domain="D", description="bad"))
    with pytest.raises(
        WorkflowError,
        match=r"^validating certificate list response: MDM error for status Error: bad \(D, -1\)$",
    ):
        workflow.step_completed(completed(workflow, ctx_json(), response))
    assert enqueued.steps == []


def test_certprof_list_revalidates_context(certprof: Any) -> None:
    workflow = certprof[0]
    with pytest.raises(WorkflowError, match=r"^validating context: empty filter$"):
        workflow.step_completed(completed(workflow, b'{"profile":"scep"}', cert_list()))
    with pytest.raises(WorkflowError, match=r"^validating context: nil context$"):
        workflow.step_completed(completed(workflow, None, cert_list()))


def test_certprof_installs_when_nothing_matches(certprof: Any) -> None:
    workflow, enqueued, profiles = certprof
    response = cert_list(cert_item("other"), cert_item("scep-1", identity=False))
    workflow.step_completed(completed(workflow, ctx_json(flt='{"cn_prefix":"scep"}'), response))
    assert installed_payload(enqueued) == profiles.raw["scep"]  # no replacements: bytes as stored


def test_certprof_too_many_matches(certprof: Any) -> None:
    workflow, enqueued, _ = certprof
    response = cert_list(cert_item("scep-1"), cert_item("scep-2"), cert_item("other"))
    with pytest.raises(WorkflowError, match=r"^too many certs after filter: 2; before filter: 3$"):
        workflow.step_completed(
            completed(workflow, ctx_json('{"always_replace":true}', '{"cn_prefix":"scep"}'), response)
        )
    assert enqueued.steps == []


def test_filter_rules() -> None:
    response = cert_list(
        cert_item("scep-a"),
        cert_item("scep-b", identity=False),
        cert_item("SCEP-c"),
        {"CommonName": "scep-d"},
    )
    assert isinstance(response, CertificateListResponse)

    def names(flt: Filter) -> list[str | None]:
        return [i.common_name for i in filter_certificates(response.certificate_list, flt)]

    assert names(Filter()) == ["scep-a", "SCEP-c"]
    assert names(Filter(cn_prefix="scep")) == ["scep-a"]
    assert names(Filter(cn_prefix="scep", allow_non_identity=True)) == ["scep-a", "scep-b", "scep-d"]
    assert names(Filter(allow_non_identity=True)) == ["scep-a", "scep-b", "SCEP-c", "scep-d"]


@pytest.mark.parametrize(
    ("criteria", "days_left", "install"),
    [
        (None, 10, False),
        ("{}", 10, False),
        ('{"always_replace":true}', 1000, True),
        ('{"until_expiry_sec":0}', 1, False),
        ('{"until_expiry_sec":-5}', 1, False),
        (f'{{"until_expiry_sec":{30 * 86400}}}', 10, True),
        (f'{{"until_expiry_sec":{30 * 86400}}}', 60, False),
        ('{"until_expiry_sec":60}', -3, True),  # already expired
        ('{"always_replace":false,"until_expiry_sec":60}', 10, False),
    ],
)
def test_certprof_criteria(certprof: Any, criteria: str | None, days_left: int, install: bool) -> None:
    workflow, enqueued, _ = certprof
    response = cert_list(cert_item("scep", not_after=datetime.now(UTC) + timedelta(days=days_left)))
    workflow.step_completed(completed(workflow, ctx_json(criteria), response))
    assert len(enqueued.steps) == (1 if install else 0)


def test_criteria_expiry_is_strictly_less() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    response = cert_list(cert_item("c", not_after=now + timedelta(seconds=100)))
    assert isinstance(response, CertificateListResponse)
    item = response.certificate_list[0]
    assert should_replace(item, Criteria(until_expiry_sec=100), now)[0] is False
    assert should_replace(item, Criteria(until_expiry_sec=101), now)[0] is True


def test_certprof_unparsable_certificate(certprof: Any) -> None:
    workflow, enqueued, _ = certprof
    response = cert_list({"CommonName": "scep", "IsIdentity": True, "Data": b"not DER"})
    with pytest.raises(WorkflowError, match=r"^checking criteria: parse certificate: "):
        workflow.step_completed(completed(workflow, ctx_json('{"until_expiry_sec":60}'), response))
    assert enqueued.steps == []


def test_certprof_missing_profile(certprof: Any) -> None:
    workflow, enqueued, _ = certprof
    with pytest.raises(WorkflowError, match=r"^retrieving raw profile: gone: profile not found: gone$"):
        workflow.step_completed(completed(workflow, b'{"profile":"gone","filter":{}}', cert_list()))
    assert enqueued.steps == []


def test_certprof_applies_text_replacements(certprof: Any) -> None:
    workflow, enqueued, _ = certprof
    context = ctx_json(extra=',"text_replacements":{"%CN%":"dev-%CHAL%","%CHAL%":"secret"}')
    workflow.step_completed(completed(workflow, context, cert_list()))
    profile = plistlib.loads(installed_payload(enqueued))
    assert profile["PayloadContent"][0]["PayloadContent"]["Subject"] == [["CN", "dev-%CHAL%", "secret"]]


# --- certprof: text replacement (§6.5) ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pairs", "expected"),
    [
        (b"a %X% b %X%", {"%X%": "1"}, b"a 1 b 1"),
        (b"ab", {"a": "b", "b": "c"}, b"bc"),  # one pass, values never rescanned
        (b"%CN%%CNX%", {"%CN%": "1", "%CNX%": "2", "%CN": "3"}, b"12"),  # longest key wins
        (b"aaa", {"aa": "x"}, b"xa"),  # no overlapping matches
        (b"a.b", {".": "dot", "": "E"}, b"adotb"),  # regex characters literal, empty key ignored
        (b"", {"a": "b"}, b""),
        (b"same", {}, b"same"),
        (b"same", None, b"same"),
        ("caf\u00e9 %N%".encode(), {"%N%": "\u00fc"}, "caf\u00e9 \u00fc".encode()),
    ],
)
def test_replace_text(text: bytes, pairs: dict[str, str] | None, expected: bytes) -> None:
    assert replace_text(text, pairs) == expected


# --- certprof: profile step, unknown steps, timeout, events (§6.6) --------------------------


def test_certprof_profile_step(certprof: Any) -> None:
    workflow, enqueued, _ = certprof
    workflow.step_completed(
        completed(workflow, None, typed("InstallProfile", report("U", "D1")), name="profile")
    )
    with pytest.raises(
        WorkflowError,
        match=r"^validating install profile response: MDM error for status Error: "
        r"nope \(MCProfileErrorDomain, 1\)$",
    ):
        workflow.step_completed(
            completed(
                workflow,
                None,
                typed("InstallProfile", error_report("U", "D1", 1, "MCProfileErrorDomain", "nope")),
                name="profile",
            )
        )
    with pytest.raises(StepResultCommandLenMismatchError):
        workflow.step_completed(completed(workflow, None, name="profile"))
    with pytest.raises(IncorrectCommandTypeError):
        workflow.step_completed(completed(workflow, None, cert_list(), name="profile"))
    assert enqueued.steps == []


def test_certprof_unknown_step_timeout_and_events(certprof: Any) -> None:
    workflow = certprof[0]
    with pytest.raises(UnknownStepNameError, match=r"^unknown step name: other$"):
        workflow.step_completed(completed(workflow, None, cert_list(), name="other"))
    with pytest.raises(TimeoutNotUsedError):
        workflow.step_timeout(completed(workflow, ctx_json(), name=""))
    with pytest.raises(EventsNotSupportedError):
        workflow.event(enrollment(True), "D1", None)


# --- certprof: the Go test scenario with the shared test data (§6.7) ------------------------


@pytest.fixture
def certprof_data() -> Path:
    if not CERTPROF_DATA.is_dir():
        pytest.skip("shared certprof testdata not present")
    return CERTPROF_DATA


def test_certprof_go_scenario(certprof_data: Path) -> None:
    enqueued = Enqueued()
    profiles = MemoryProfiles(scep=(certprof_data / "scep.mobileconfig").read_bytes())
    workflow = CertProfWorkflow(enqueued, profiles)
    enrollment_id = "6362F867-FFF2-4EA6-905C-3C796DF4EF68"
    workflow.start(StepStart(instance_id="i", ids=[enrollment_id], context=decode(workflow, GO_CONTEXT)))
    [(_, first)] = enqueued.steps
    assert first.ids == [enrollment_id] and len(first.commands) == 1

    certs = typed("CertificateList", (certprof_data / "certlist.plist").read_bytes())
    assert isinstance(certs, CertificateListResponse)
    assert [(c.common_name, c.is_identity) for c in certs.certificate_list] == [("?Error_-26276?", True)]
    workflow.step_completed(
        StepResult(
            instance_id="i",
            id=enrollment_id,
            context=workflow.context_codec("").decode(workflow.context_codec("").encode(first.context)),
            command_results=[certs],
        )
    )
    [_, (_, second)] = enqueued.steps
    assert second.ids == [enrollment_id] and second.name == "profile"
    [install] = second.commands
    assert isinstance(install, InstallProfile)
    profile = plistlib.loads(install.payload)
    assert profile["PayloadIdentifier"] == "com.example.scep"
    assert profile["PayloadUUID"] == "99DE38CA-FE94-49EA-BADB-768D89049973"
    assert b"<string>324429DE-46B4-4209-AF95-82D9D8942A0E</string>" in install.payload
    assert b"<string>D6E71C89-4831-4B88-9F1F-83714D526C63</string>" in install.payload

    ack = typed("InstallProfile", (certprof_data / "resp-ack.plist").read_bytes())
    workflow.step_completed(
        StepResult(instance_id="i", id=enrollment_id, name="profile", command_results=[ack])
    )
    error = typed("InstallProfile", (certprof_data / "resp-error.plist").read_bytes())
    with pytest.raises(WorkflowError, match=r"NSOSStatusErrorDomain, -909\)$"):
        workflow.step_completed(
            StepResult(instance_id="i", id=enrollment_id, name="profile", command_results=[error])
        )
