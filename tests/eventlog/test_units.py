"""Pure functions and settings of the event log."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2
from pydantic import ValidationError

from driftloop.eventlog import TopicPartition, murmur2, partition_for_key
from driftloop.eventlog.assignment import range_assign
from driftloop.eventlog.settings import KafkaSettings
from driftloop.eventlog.sqlite_store import decode_headers, encode_headers

# Test vectors of the Java client's Utils.murmur2 (Kafka's UtilsTest), as signed 32-bit ints.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), JAVA_MURMUR2.items())
def test_murmur2_matches_the_java_client(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected & 0xFFFFFFFF


def test_murmur2_matches_kafka_python_on_random_keys() -> None:
    for length in range(64):
        key = os.urandom(length)
        assert murmur2(key) == kafka_python_murmur2(key)


def test_partition_for_key_is_stable_and_in_range() -> None:
    for i in range(500):
        key = f"pump-{i}".encode()
        partition = partition_for_key(key, 6)
        assert 0 <= partition < 6
        assert partition == partition_for_key(key, 6)
        assert partition == (kafka_python_murmur2(key) & 0x7FFFFFFF) % 6


def test_range_assignment_is_deterministic_and_complete() -> None:
    subscriptions = {"b": ["t", "u"], "a": ["t"], "c": ["t"]}
    result = range_assign(subscriptions, {"t": 7, "u": 2})
    assert result["a"] == {TopicPartition("t", p) for p in (0, 1, 2)}
    assert result["b"] == {
        TopicPartition("t", 3),
        TopicPartition("t", 4),
        TopicPartition("u", 0),
        TopicPartition("u", 1),
    }
    assert result["c"] == {TopicPartition("t", 5), TopicPartition("t", 6)}
    assert range_assign({"x": ["t"]}, {}) == {"x": set()}


def test_headers_round_trip_through_the_embedded_encoding() -> None:
    headers = (("type", b"io.seldon.serving.inference.request"), ("", b""), ("bin", bytes(range(256))))
    assert decode_headers(encode_headers(headers)) == headers


def test_kafka_settings_pass_tls_and_sasl_through(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username="driftloop",
        password="s3cret",  # type: ignore[arg-type]
        ssl_cafile=ca,
    )
    config = settings.client_config()
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "driftloop"
    assert config["sasl_plain_password"] == "s3cret"
    assert config["ssl_cafile"] == str(ca)
    assert "s3cret" not in repr(settings)


def test_kafka_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("DRIFTLOOP_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("DRIFTLOOP_KAFKA_USERNAME", "u")
    monkeypatch.setenv("DRIFTLOOP_KAFKA_PASSWORD", "p")
    assert KafkaSettings().client_config()["sasl_mechanism"] == "PLAIN"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs DRIFTLOOP_KAFKA_SASL_MECHANISM"),
        ({"sasl_mechanism": "PLAIN", "username": "u", "password": "p"}, "use SASL_SSL"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}, "needs DRIFTLOOP_KAFKA_USERNAME"),
        ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "is not a readable file"),
        ({"security_protocol": "TLS"}, "security_protocol"),
    ],
)
def test_inconsistent_kafka_security_settings_are_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KafkaSettings.model_validate(values)


def test_bulk_send_docstring_example_runs() -> None:
    import doctest

    import driftloop.eventlog.bulk

    result = doctest.testmod(driftloop.eventlog.bulk)
    assert result.attempted > 0 and result.failed == 0


VARINTS = [-(2**40), -(2**31), -65, -64, -1, 0, 1, 63, 64, 4095, 4096, 16384, 2**31, 2**40]


@pytest.mark.parametrize("value", VARINTS)
def test_bulk_varints_are_kafka_pythons(value: int) -> None:
    from kafka.record.util import decode_varint, encode_varint

    from driftloop.eventlog import kafka_bulk, kafka_fetch

    expected = bytearray()
    encode_varint(value, expected.append)
    assert kafka_bulk._zz(value) == bytes(expected)
    assert kafka_fetch._varint(bytearray(expected), 0) == decode_varint(expected, 0) == (value, len(expected))


def _unconnected_kafka_log(request_timeout_s: float) -> object:
    """A KafkaEventLog whose admin requests are the test's to script (no broker needed)."""
    from driftloop.eventlog.kafka import KafkaEventLog

    log = KafkaEventLog.__new__(KafkaEventLog)
    log.bootstrap_servers = "127.0.0.1:9"
    log.settings = KafkaSettings(request_timeout_s=request_timeout_s)
    return log


def test_kafka_admin_requests_retry_a_broker_that_is_coming_back() -> None:
    import kafka.errors as kerrors

    log = _unconnected_kafka_log(5.0)
    failures = [kerrors.NodeNotReadyError("No node_id provided"), kerrors.KafkaConnectionError("refused")]

    def describe() -> str:
        if failures:
            raise failures.pop(0)
        return "described"

    assert log._retrying("describing topic 't'", describe) == "described"  # type: ignore[attr-defined]
    assert failures == []


def test_kafka_admin_requests_give_up_with_the_error_after_the_request_timeout() -> None:
    import time

    import kafka.errors as kerrors

    from driftloop.eventlog import EventLogError

    log = _unconnected_kafka_log(0.3)
    calls = []

    def never_ready() -> None:
        calls.append(time.monotonic())
        raise kerrors.NodeNotReadyError("No node_id provided")

    with pytest.raises(EventLogError, match=r"describing topic 't' on 127.0.0.1:9 failed: .*No node_id"):
        log._retrying("describing topic 't'", never_ready)  # type: ignore[attr-defined]
    assert len(calls) >= 2 and calls[-1] - calls[0] <= 0.3


def test_kafka_admin_requests_do_not_retry_what_cannot_succeed() -> None:
    import kafka.errors as kerrors

    from driftloop.eventlog import EventLogError

    log = _unconnected_kafka_log(5.0)
    calls = []

    def refused() -> None:
        calls.append(1)
        raise kerrors.TopicAuthorizationFailedError("not allowed")

    with pytest.raises(EventLogError, match="not allowed"):
        log._retrying("creating topic 't'", refused)  # type: ignore[attr-defined]
    assert calls == [1]


def test_sockets_a_closed_kafka_client_left_open_are_closed() -> None:
    """kafka-python 3.0 leaves a transport's socket open when it was closed with bytes still to send;
    ``close_sockets`` closes what is left, on clients with a manager of their own or behind ``_client``."""
    import socket
    from types import SimpleNamespace

    from driftloop.eventlog.kafka_compat import close_sockets

    left_open, already_closed = socket.socket(), SimpleNamespace(_sock=None)
    transport = SimpleNamespace(_sock=left_open)
    conns = {1: SimpleNamespace(transport=transport), 2: SimpleNamespace(transport=already_closed)}
    conns[3] = SimpleNamespace(transport=None)
    consumer_like = SimpleNamespace(_client=SimpleNamespace(_manager=SimpleNamespace(_conns=conns)))
    assert close_sockets(consumer_like) == 1
    assert left_open.fileno() == -1 and transport._sock is None
    assert close_sockets(consumer_like) == 0
    admin_like = SimpleNamespace(_manager=SimpleNamespace(_conns={}))
    assert close_sockets(admin_like) == 0 and close_sockets(object()) == 0
