"""Module client helpers (medchaind/flows.py): one flow, a method on both clients.

The clients here have no socket: ``call`` is replaced by a script, so what is tested is
the generation (names, signatures, docstrings, clashes) and the two drivers (chain id,
errors thrown into the flow, loops), not the transport (tests/ipc does that).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio

from medchaind import client as cl
from medchaind.flows import Call, Flow, Helper, helper, hexstr
from medchaind.modules import module_classes


@helper
def example_echo(value: str) -> Flow[str]:
    """Echo ``value`` through the node (one call)."""
    got: str = yield Call("test_echo", [value])
    return got


@helper
def example_tagged(chain_id: str, value: str, *, times: int = 1) -> Flow[str]:
    """``value`` tagged with the chain id, ``times`` times."""
    got: str = yield Call("test_echo", [value])
    return f"{chain_id}:{got * times}"


@helper
def example_forgiving(value: str) -> Flow[str]:
    """A refused call becomes an answer: failures are thrown into the flow."""
    try:
        got: str = yield Call("test_fail", [value])
    except TimeoutError as exc:
        return f"timed out: {exc}"
    return got


@helper(loop=True)
def example_serve(chain_id: str, *, seen: list[int]) -> Flow[None]:
    """One round: read the head, wait for the next height."""
    head = yield Call("chain_head")
    seen.append(head["height"])
    yield Call("chain_waitHeight", {"height": head["height"] + 1, "timeout_ms": 10}, wait_s=0.01)


EXAMPLES = [example_echo, example_tagged, example_forgiving, example_serve]


@pytest.fixture
def examples() -> Iterator[None]:
    cl.add_helpers(EXAMPLES)
    try:
        yield
    finally:
        for h in EXAMPLES:
            for c in (cl.Client, cl.AsyncClient):
                delattr(c, h.name)


def script_answer(method: str, params: Any, height: list[int]) -> Any:
    if method == "node_info":
        return {"chain_id": "testnet"}
    if method == "test_echo":
        return params[0]
    if method == "test_fail":
        raise TimeoutError("no reply to test_fail within the timeout")
    if method == "chain_head":
        return {"height": height[0]}
    if method == "chain_waitHeight":
        height[0] = params["height"]
        return {"height": height[0]}
    raise AssertionError(f"unexpected call {method}")


def sync_client(calls: list[str]) -> cl.Client:
    c = object.__new__(cl.Client)  # no socket: calls answered by the script
    c.timeout = 1.0
    height = [5]

    def call(method: str, params: Any = None, timeout: float | None = None) -> Any:
        calls.append(method)
        return script_answer(method, params, height)

    c.call = call  # type: ignore[method-assign]
    return c


def async_client(calls: list[str]) -> cl.AsyncClient:
    c = object.__new__(cl.AsyncClient)
    c.timeout = 1.0
    height = [5]

    async def call(method: str, params: Any = None, **_: Any) -> Any:  # the driver passes timeout=
        await trio.lowlevel.checkpoint()
        calls.append(method)
        return script_answer(method, params, height)

    c.call = call  # type: ignore[method-assign]
    return c


def registry_helpers() -> list[Helper[..., Any]]:
    return [h for cls in module_classes() for h in cl.helpers_of(cls)]


def test_every_module_helper_is_a_method_of_both_clients() -> None:
    names = [h.name for h in registry_helpers()]
    expected = {
        "register_identity", "identity", "accredit", "revoke", "add_record", "read_record", "grant",
        "revoke_consent", "break_glass", "erase_record", "key_requests", "answer_key_requests",
        "serve_key_requests",
    }
    assert expected <= set(names) and len(names) == len(set(names))
    for h in registry_helpers():
        sync, async_ = getattr(cl.Client, h.name), getattr(cl.AsyncClient, h.name)
        assert not inspect.iscoroutinefunction(sync) and inspect.iscoroutinefunction(async_)
        assert sync.__doc__ and sync.__doc__ == async_.__doc__ == h.fn.__doc__
        assert "chain_id" not in inspect.signature(sync).parameters
        assert sync.__qualname__ == f"Client.{h.name}" and async_.__qualname__ == f"AsyncClient.{h.name}"


def test_methods_keep_the_signatures_callers_use() -> None:
    sig = inspect.signature(cl.Client.grant)
    assert list(sig.parameters)[:2] == ["self", "patient"]
    assert sig.parameters["actions"].default == ("read",) and sig.parameters["share_existing"].default is True
    assert sig.return_annotation == "dict[str, Any]"
    read = inspect.signature(cl.AsyncClient.read_record).parameters
    assert (read["purpose"].default, read["wait_key_s"].default) == ("TREAT", 0.0)
    # a loop: the blocking client adds ``stop``, the async one runs until cancelled
    assert "stop" in inspect.signature(cl.Client.serve_key_requests).parameters
    assert "stop" not in inspect.signature(cl.AsyncClient.serve_key_requests).parameters
    assert inspect.signature(cl.Client.serve_key_requests).return_annotation is None


def test_the_blocking_client_drives_a_helper_and_fills_in_the_chain_id(examples: None) -> None:
    calls: list[str] = []
    c = sync_client(calls)
    assert c.example_echo("hi") == "hi"
    assert c.example_tagged("ab", times=2) == "testnet:abab"
    assert calls == ["test_echo", "node_info", "test_echo"]  # the chain id is asked once, when needed
    assert c.example_forgiving("x") == "timed out: no reply to test_fail within the timeout"


async def test_the_async_client_drives_the_same_flows(examples: None) -> None:
    calls: list[str] = []
    c = async_client(calls)
    assert await c.example_echo("hi") == "hi"
    assert await c.example_tagged("ab", times=2) == "testnet:abab"
    assert await c.example_forgiving("x") == "timed out: no reply to test_fail within the timeout"
    assert calls == ["test_echo", "node_info", "test_echo", "test_fail"]


def test_a_blocking_loop_repeats_its_round_until_stop(examples: None) -> None:
    seen: list[int] = []
    c = sync_client([])
    c.example_serve(seen=seen, stop=lambda: len(seen) == 3)
    assert seen == [5, 6, 7]


async def test_an_async_loop_repeats_its_round_until_cancelled(examples: None) -> None:
    seen: list[int] = []
    c = async_client([])
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: c.example_serve(seen=seen))
            while len(seen) < 3:
                await trio.lowlevel.checkpoint()
            scope.cancel()
    assert seen[:3] == [5, 6, 7]


def test_adding_helpers_twice_is_harmless_and_a_taken_name_is_refused(examples: None) -> None:
    cl.add_helpers(EXAMPLES)  # again: nothing changes

    @helper
    def head() -> Flow[None]:
        yield Call("chain_head")

    @helper(name="example_fresh")
    def fresh() -> Flow[None]:
        yield Call("chain_head")

    @helper(name="example_echo")
    def other_echo() -> Flow[None]:
        yield Call("chain_head")

    with pytest.raises(ValueError, match="'head'.*taken by the client"):
        cl.add_helpers([fresh, head])
    assert not hasattr(cl.Client, "example_fresh")  # nothing of a refused batch is added
    with pytest.raises(ValueError, match="'example_echo'.*taken by helper .*example_echo"):
        cl.add_helpers([other_echo])
    with pytest.raises(ValueError, match="'timeout'"):
        cl.add_helpers([helper(name="timeout")(fresh.fn)])


def test_a_helper_is_a_generator_with_a_public_name() -> None:
    def not_a_flow(x: int) -> Any:
        return Call("chain_head")

    with pytest.raises(TypeError, match="must be a generator"):
        helper(not_a_flow)

    def round_(stop: Callable[[], bool]) -> Flow[None]:
        yield Call("chain_head")

    with pytest.raises(ValueError, match="stop"):
        helper(loop=True)(round_)
    with pytest.raises(ValueError, match="public identifier"):
        helper(name="_hidden")(round_)


def test_a_helper_called_directly_is_its_flow() -> None:
    flow = example_tagged("c", "v")
    call = next(flow)
    assert call == Call("test_echo", ["v"])
    with pytest.raises(StopIteration) as done:
        flow.send("v")
    assert done.value.value == "c:v"
    assert hexstr(b"\x01") == "0x01"
