"""NATS header names ledgerbus sets on every envelope, so tools can route and trace without parsing JSON."""

MSG_ID = "Nats-Msg-Id"  # JetStream deduplication key = envelope id
SENDER = "Lb-Sender"
TASK = "Lb-Task"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
