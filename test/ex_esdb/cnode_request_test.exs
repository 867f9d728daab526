defmodule ExESDB.CNodeRequestTest do
  # The C node backend's tries of a put or delete carry a request, {Id,
  # Retry} as the request's last argument (docs/PROTOCOL.md, "Puts and
  # deletes with a request"), the same Id in every try and Retry set on
  # a resend, so that a C node's store does not apply a resend again
  # whose first try it applied (before: resent unmarked, as the BEAM
  # gateway's were). What the C node does with them: cnode_test's
  # parity test.
  use ExUnit.Case, async: true

  alias ExESDB.Backend.CNode

  test "a put's or delete's tries carry one request id; a resend is marked" do
    for command <- [
          {:checkpoint_put, "n", 1, "d"},
          {:checkpoint_delete, "n"},
          {:snapshot_put, "u", 3, "t", "d", {:term, :erlang.term_to_binary(1)}},
          {:snapshot_delete, "u"}
        ] do
      first = CNode.first_try(command)
      size = tuple_size(command)
      assert tuple_size(first) == size + 1
      assert Tuple.delete_at(first, size) == command
      assert {<<id::binary-size(16)>>, false} = elem(first, size)
      again = CNode.resubmission(first)
      assert again == put_elem(first, size, {id, true})
      assert CNode.resubmission(again) == again
      # another call: another id
      assert elem(CNode.first_try(command), size) != elem(first, size)
    end
  end

  test "appends go as they are and are marked as the gateway marks them" do
    append = {:append, "s", :any, []}
    assert CNode.first_try(append) == append
    assert CNode.resubmission(append) == {:append, "s", {:retry, :any}, []}
    # a put without a request (none was given): sent again as it is
    assert CNode.resubmission({:checkpoint_delete, "n"}) == {:checkpoint_delete, "n"}
  end
end
