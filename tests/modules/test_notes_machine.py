"""The example plug-in module on the shared app-test harness: pre-state, tx, post-state."""

from __future__ import annotations

from notes import NotesModule

from medchaind.testing.appkit import AppChain, digest, pub


def chain() -> AppChain:
    c = AppChain.of({"A": 1}, extra=[NotesModule()])
    c.register("P", "patient")
    return c


def test_pin_then_get() -> None:
    c = chain()
    r = c.ok("P", "notes.pin", {"tag": digest("t1"), "text": "hello"})
    assert list(r.events) == [{"type": "notes.pinned", "tag": digest("t1"), "author": pub("P")}]
    assert c.query("notes.get", {"tag": digest("t1")}) == {
        "tag": "0x" + digest("t1").hex(), "author": "0x" + pub("P").hex(), "text": "hello", "height": c.height,
    }


def test_second_pin_of_a_tag_is_refused_and_changes_nothing() -> None:
    c = chain()
    c.ok("P", "notes.pin", {"tag": digest("t1"), "text": "first"})
    c.fails("P", "notes.pin", {"tag": digest("t1"), "text": "second"}, code="tag_taken")
    assert c.query("notes.get", {"tag": digest("t1")})["text"] == "first"


def test_unregistered_sender_and_bad_body_are_refused() -> None:
    c = chain()
    c.fails("X", "notes.pin", {"tag": digest("t1"), "text": "hi"}, code="unregistered_sender")
    c.fails("P", "notes.pin", {"tag": b"short", "text": "hi"}, code="invalid_body")
    c.fails("P", "notes.pin", {"tag": digest("t1"), "text": "hi", "extra": 1}, code="invalid_body")
