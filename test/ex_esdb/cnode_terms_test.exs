defmodule ExESDB.CNode.TermsTest do
  # What the C node sends is checked like a page the NIF reads: a record
  # tuple of the wrong shape is {:error, {:corrupt, _}}, never a raise.
  use ExUnit.Case, async: true

  alias ExESDB.CNode.Terms

  @us 1_700_000_000_000_000
  defp tuple, do: {0, "s", 0, "id", "t", "data", "", nil, nil, @us}

  test "well-formed record tuples become records" do
    assert {:ok, [%ExESDB.EventRecord{stream_id: "s", data: "data"}]} =
             Terms.records([tuple()], false)
  end

  test "a malformed record tuple answers {:corrupt, _}" do
    for bad <- [
          {0, "s"},
          :not_a_tuple,
          put_elem(tuple(), 9, :not_a_time),
          put_elem(tuple(), 5, {:unknown_encoding, "x"})
        ] do
      assert {:error, {:corrupt, _}} = Terms.records([tuple(), bad], true), inspect(bad)
    end
  end
end
