defmodule ExESDB.SubscriptionCheckpointsTest do
  # Issue 10 item 20: listing checkpoints and failing to write one.
  use ExUnit.Case, async: true

  alias ExESDB.{Store, Subscriptions}

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  @tag timeout: 120_000
  test "get_subscriptions lists more than 10,000 and checkpoints of the Erlang API", %{store: store} do
    {:ok, s} = Store.fetch(store)
    :ok = :ex_esdb.put_checkpoint(s.handle, "from-erlang", 5, "opaque bytes")

    # queued together so the writer commits them in a few transactions
    refs =
      for i <- 1..10_001 do
        ref = make_ref()
        :ok = :ex_esdb_nif.checkpoint_put(s.handle, ref, "cp-#{i}", i, <<>>)
        ref
      end

    for ref <- refs, do: assert_receive({^ref, :ok}, 10_000)

    assert {:ok, subs} = Subscriptions.get_subscriptions(store)
    assert length(subs) == 10_002

    assert %{selector: nil, checkpoint: 5, running: false} =
             Enum.find(subs, &(&1.name == "from-erlang"))
  end

  test "a checkpoint that cannot be written is an error, not a crash", %{store: store} do
    # a definition above max_event_bytes (16 MiB) cannot be stored
    selector = {:by_event_payload, %{"pad" => :binary.copy("x", 17 * 1024 * 1024)}}
    assert {:error, reason} = Subscriptions.subscribe_to(store, "too-big", selector, self())
    # the store's answer, not a crash of the subscription's init
    assert reason == :limit_exceeded or match?({:limit_exceeded, _, _}, reason)
    assert {:ok, []} = Subscriptions.get_subscriptions(store)
    # the store still serves subscriptions
    assert {:ok, _} = Subscriptions.subscribe_to(store, "fine", {:by_stream, "$all"}, self())
  end
end
