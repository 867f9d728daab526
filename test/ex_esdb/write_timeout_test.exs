defmodule ExESDB.WriteTimeoutTest do
  # A write whose caller stops waiting: {:error, :timeout} means it was
  # withdrawn and is never applied; {:error, :outcome_unknown} that the
  # writer had it (it may be applied). The writer is kept busy by a large
  # append sent straight to the NIF, so that small ones wait in the queue.
  use ExUnit.Case, async: true

  alias ExESDB.{NewEvent, Store, Streams, Test.NifBackend}

  defp nif_event(data), do: {ExESDB.UUID.uuid4_binary(), "t", data, "", nil, nil}

  # Send a command straight to the NIF and wait for its reply.
  defp nif_append(handle, stream, events) do
    ref = make_ref()
    :ok = :ex_esdb_nif.append(handle, ref, stream, :any, events)
    ref
  end

  # One round: a large append keeps the writer busy while small appends
  # with a 1 ms timeout queue behind it; returns each small one's answer
  # once the writer has dealt with all of them.
  defp round(s, handle, r) do
    big = nif_append(handle, "big", for(_ <- 1..20, do: nif_event(:binary.copy("x", 1_048_576))))

    answers =
      for i <- 1..20 do
        id = "r#{r}-#{i}"
        {id, Streams.append_events(s, id, :no_stream, [%NewEvent{event_type: "t", data: i}])}
      end

    assert_receive {^big, {:ok, _, _}}, 60_000
    # The writer answers in queue order: once this one is answered, every
    # command queued before it was applied or withdrawn.
    last = nif_append(handle, "last", [nif_event("")])
    assert_receive {^last, {:ok, _, _}}, 60_000
    answers
  end

  @tag store_opts: [timeout: 1]
  test "a timed-out append was withdrawn and is never applied", context do
    %{store: s} = NifBackend.start_store(context)
    {:ok, store} = Store.fetch(s)

    # Under load a round may see no timeout; a few rounds see some.
    answers =
      Enum.reduce_while(1..10, [], fn r, acc ->
        acc = acc ++ round(s, store.handle, r)

        if Enum.any?(acc, &match?({_, {:error, :timeout}}, &1)),
          do: {:halt, acc},
          else: {:cont, acc}
      end)

    assert Enum.any?(answers, &match?({_, {:error, :timeout}}, &1))

    for {id, answer} <- answers do
      {:ok, version} = Streams.get_version(s, id)

      case answer do
        {:error, :timeout} -> assert version == 0, "#{id} was applied after :timeout"
        {:ok, 1} -> assert version == 1
        {:error, :outcome_unknown} -> assert version in [0, 1]
      end
    end
  end
end
