"""Pure pieces of security mode and dead letters: keys and signatures, permissions, the DEAD_LETTER envelope."""

from __future__ import annotations

import pytest

from ledgerbus.bus.subjects import Subjects
from ledgerbus.errors import ConfigError
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import new_request
from ledgerbus.security import permissions as perms
from ledgerbus.security.deadletters import dead_letter, letter_id
from ledgerbus.security.deployment import Deployment, TLSFiles
from ledgerbus.security.keys import Identity, envelope_signature_problem, signature_valid, verify_key


def test_signature_binds_body_and_key():
    a, b = Identity.generate("a"), Identity.generate("b")
    sig = a.sign(b"body")
    assert signature_valid(a.public, b"body", sig)
    assert not signature_valid(a.public, b"body!", sig)
    assert not signature_valid(b.public, b"body", sig)
    assert not signature_valid(a.public, b"body", "not base64 at all!")
    assert Identity.from_seed("a", a.seed) == a


def test_an_envelope_signature_binds_subject_body_and_key_and_is_versioned():
    a, b = Identity.generate("a"), Identity.generate("b")
    sig = a.sign_envelope("lb.x.RESPONSE.c1", b"body")
    assert sig.startswith("v2.")
    assert envelope_signature_problem(a.public, "lb.x.RESPONSE.c1", b"body", sig) is None
    assert "on subject lb.x.RESPONSE.c2" in envelope_signature_problem(a.public, "lb.x.RESPONSE.c2", b"body", sig)
    assert envelope_signature_problem(a.public, "lb.x.RESPONSE.c1", b"body!", sig) is not None
    assert envelope_signature_problem(b.public, "lb.x.RESPONSE.c1", b"body", sig) is not None
    assert "old (v1)" in envelope_signature_problem(a.public, "lb.x.RESPONSE.c1", b"body", a.sign(b"body"))
    assert "not a v2 signature" in envelope_signature_problem(a.public, "lb.x.RESPONSE.c1", b"body", "junk")


# Ids fixed: a fresh seed in the test id would differ between xdist workers, which refuse to run then.
@pytest.mark.parametrize("bad", ["", "UABC", "not-base32-!!", Identity.generate("x").seed],
                         ids=["empty", "short", "not-base32", "a-seed"])
def test_verify_key_refuses_what_is_not_a_user_public_key(bad):
    with pytest.raises(ConfigError):
        verify_key(bad)


def test_bad_seed_is_a_config_error():
    with pytest.raises(ConfigError, match="not a valid nkey seed"):
        Identity.from_seed("x", "SUNOTASEED")


def test_agent_permissions_are_pinned_to_its_own_type():
    p = perms.agent("research", Subjects("lb"))
    assert "$JS.API.CONSUMER.CREATE.LEDGER.agent-research.lb.research.REQUEST.>" in p.publish
    assert "$JS.API.CONSUMER.MSG.NEXT.LEDGER.agent-research" in p.publish
    assert p.subscribe == ["lb.research.*.>", "_INBOX.research.>"]
    text = " ".join(p.publish)
    for forbidden in ("DELETE", "PURGE", "STREAM.MSG.GET", "STREAM.INFO", "agent-writing", "UPDATE"):
        assert forbidden not in text
    assert not any(s in (">", "lb.>", "_INBOX.>") for s in p.subscribe)


def test_prefix_changes_stream_and_buckets():
    p = perms.agent("research", Subjects("acme"))
    assert "$JS.API.CONSUMER.MSG.NEXT.LEDGER_ACME.agent-research" in p.publish
    assert "$KV.LB_RESULTS_ACME.research.>" in p.publish


def test_recorder_publishes_nothing_on_the_bus_and_only_admin_has_everything():
    rec = perms.recorder("recorder", Subjects())
    assert not any(s.startswith("lb.") for s in rec.publish)
    dep = Deployment.generate(["research"])
    roles = {m.name: m.role for m in dep.members.values()}
    assert roles == {"research": "agent", "orchestrator": "client", "recorder": "recorder", "admin": "admin"}
    assert [n for n in dep.members if dep.permissions(n).publish == [">"]] == ["admin"]


def test_deployment_refuses_bad_or_repeated_names():
    with pytest.raises(ConfigError, match="address"):
        Deployment.generate(["Research.*"])
    with pytest.raises(ConfigError, match="twice"):
        Deployment.generate(["orchestrator"])


def test_server_lines_render_users_and_tls():
    dep = Deployment.generate(["research"])
    lines = "\n".join(dep.server_lines(tls=TLSFiles("/c.pem", "/k.pem", "/ca.pem", verify=True)))
    assert lines.count("nkey: U") == 4 and 'cert_file: "/c.pem"' in lines and "verify: true" in lines


def test_dead_letter_answers_the_request_and_says_why():
    req = new_request(sender="orchestrator", recipient="research", capability="research.search", payload={})
    env = dead_letter(req, stream_seq=42, deliveries=5, consumer="agent-research", sender="research")
    assert env.id == letter_id(42) == "deadletter-42"
    assert env.action is Action.ERROR and env.causation_id == req.id and env.recipient == "orchestrator"
    assert env.task_id == req.task_id and env.conversation_id == req.conversation_id
    assert env.error.code == "DEAD_LETTER" and not env.error.retryable
    assert "delivered 5 times" in env.error.message and "redrive deadletter-42" in env.error.message
    assert env.error.details == {"streamSeq": 42, "deliveries": 5, "consumer": "agent-research", "requestId": req.id}
