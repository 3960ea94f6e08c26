from gateway.sessions import TICKET_TTL, Signer


def test_signed_payloads_round_trip_and_expire() -> None:
    now = [1000.0]
    signer = Signer("secret", clock=lambda: now[0])
    token = signer.sign("session", {"u": 7, "h": "a.example.org"}, ttl=60)
    assert signer.verify("session", token) == {"u": 7, "h": "a.example.org", "exp": 1060.0}
    now[0] = 1061.0
    assert signer.verify("session", token) is None


def test_forgeries_and_other_purposes_are_refused() -> None:
    signer = Signer("secret")
    token = signer.sign("session", {"u": 7}, ttl=60)
    body, _, mac = token.partition(".")
    assert signer.verify("ticket", token) is None  # a session is not a ticket
    assert Signer("other secret").verify("session", token) is None
    assert (
        signer.verify("session", body + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B")) is None
    )
    assert signer.verify("session", "garbage") is None and signer.verify("session", ".") is None


def test_tickets_work_once_and_briefly() -> None:
    now = [0.0]
    signer = Signer("secret", clock=lambda: now[0])
    ticket = signer.ticket({"u": 7})
    assert signer.redeem(ticket) is not None
    assert signer.redeem(ticket) is None  # replayed
    late = signer.ticket({"u": 7})
    now[0] = TICKET_TTL + 1
    assert signer.redeem(late) is None
