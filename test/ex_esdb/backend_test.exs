defmodule ExESDB.BackendTest do
  # The boundary to native code: one module behind it calls the NIF, the
  # behaviour is documented, and the {Ref, Reply} wait and the naming of
  # core errors are each written once.
  use ExUnit.Case, async: true

  alias ExESDB.Backend.{Await, Errors}

  test "Backend.NIF is the only module of lib/ that calls the NIF" do
    callers =
      for file <- Path.wildcard(Path.expand("../../lib/**/*.ex", __DIR__)),
          File.read!(file) =~ ":ex_esdb_nif",
          do: Path.relative_to(file, Path.expand("../..", __DIR__))

    assert callers == ["lib/ex_esdb/backend/nif.ex"]
  end

  test "every callback is documented and implemented by Backend.NIF" do
    Code.ensure_loaded!(ExESDB.Backend.NIF)
    callbacks = ExESDB.Backend.behaviour_info(:callbacks)
    {:docs_v1, _, _, _, _, _, docs} = Code.fetch_docs(ExESDB.Backend)
    documented = for {{:callback, name, arity}, _, _, %{"en" => _}, _} <- docs, do: {name, arity}
    assert Enum.sort(callbacks) == Enum.sort(documented)
    for {name, arity} <- callbacks, do: assert(function_exported?(ExESDB.Backend.NIF, name, arity))
  end

  describe "Await" do
    test "a command refused at once answers its error, waiting for nothing" do
      assert {:error, :closed} = Await.call(fn _ref -> {:error, :closed} end, 10_000, &flunk/1)
    end

    test "the reply to the command's reference is the answer" do
      submit = fn ref -> send(self(), {make_ref(), :other}) && send(self(), {ref, :done}) && :ok end
      assert :done = Await.call(submit, 1_000, fn _ -> flunk("cancelled") end)
    end

    test "past the timeout a withdrawn command is a :timeout" do
      assert {:error, :timeout} = Await.call(fn _ -> :ok end, 0, fn _ref -> :ok end)
    end

    test "past the timeout a command already taken is its reply if it came, else unknown" do
      # the reply came between the timeout and the cancel
      taken_then_answered = fn ref -> send(self(), {ref, {:ok, 1}}) && :not_queued end
      assert {:ok, 1} = Await.call(fn _ -> :ok end, 0, taken_then_answered)
      assert {:error, :outcome_unknown} = Await.call(fn _ -> :ok end, 0, fn _ -> :not_queued end)
    end
  end

  test "core not_found is named for what was looked up; other replies pass" do
    assert Errors.translate(:snapshot_get, {:error, :not_found}) == {:error, :snapshot_not_found}
    assert Errors.translate(:snapshot_delete, {:error, :not_found}) == {:error, :snapshot_not_found}

    for op <- [:checkpoint_get, :checkpoint_delete, :grant, :unsubscribe],
        do: assert(Errors.translate(op, {:error, :not_found}) == {:error, :subscription_not_found})

    assert Errors.translate(:append, {:error, :stream_deleted}) == {:error, :stream_deleted}
    assert Errors.translate(:grant, :ok) == :ok
  end
end
