defmodule ExESDB.CNodeClusterUnreachableTest do
  # A write to a cluster of C nodes none of which is connected answers,
  # out of time, in the error vocabulary (as the gateway does):
  # :no_quorum, not the raw {:unreachable, cnode} of one try.
  use ExUnit.Case, async: true

  alias ExESDB.Backend.CNode

  test "every C node of the cluster out of reach: {:error, :no_quorum} within the timeout" do
    h = %CNode.Handle{
      cnode: :cn_a@nowhere,
      store_id: :cn_unreachable,
      relay: :cn_unreachable_relay_a,
      members: %{cn_a@nowhere: :cn_unreachable_relay_a, cn_b@nowhere: :cn_unreachable_relay_b}
    }

    # 2 s: time for tries to be made on a loaded machine (with 200 ms the
    # deadline could pass before the first, and the answer was :timeout)
    store = %ExESDB.Store{store_id: :cn_unreachable, backend: CNode, handle: h, timeout: 2_000}
    t0 = System.monotonic_time(:millisecond)
    assert CNode.submit(store, {:checkpoint_delete, "x"}) == {:error, :no_quorum}
    assert System.monotonic_time(:millisecond) - t0 < 10_000
  end
end
