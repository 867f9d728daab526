defmodule ExESDB.SubscriptionsStressTest do
  # No gap and no duplicate under load: concurrent writers, subscribers
  # that crash and resubscribe at random moments, catch-ups racing live
  # appends, and a million events through ten persistent subscriptions.
  use ExUnit.Case, async: false

  alias ExESDB.{NewEvent, Streams, Subscriptions}
  import ExESDB.Test.SubscriptionHelpers, only: [wait_until: 1]

  @moduletag timeout: 600_000

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  defp events(n), do: for(_ <- 1..n, do: %NewEvent{event_type: "s", data: nil})

  # A subscriber that records what it gets, acks most batches whole (some
  # only in part) and crashes now and then; each incarnation reports its
  # positions when it ends.
  defp flaky(store, name, parent, seed) do
    :rand.seed(:exsss, {seed, seed, seed})

    case Subscriptions.subscribe_to(store, name, {:by_stream, "$all"}, self(), buffer_size: 50) do
      {:ok, sub} -> flaky_loop(store, name, parent, sub, [])
      {:error, :subscription_already_exists} -> send(parent, {:retry, name, [], self()})
    end
  end

  defp flaky_loop(store, name, parent, sub, seen) do
    receive do
      {:events, evs} ->
        seen = Enum.reverse(Enum.map(evs, & &1.position), seen)
        send(parent, {:progress, name, List.first(seen), self()})

        cond do
          :rand.uniform(20) == 1 ->
            # crash without acking this batch
            send(parent, {:retry, name, Enum.reverse(seen), self()})
            exit(:boom)

          :rand.uniform(5) == 1 ->
            # ack only part of the batch: the rest stays unacked until a
            # later ack covers it (or a crash redelivers it)
            Subscriptions.ack_event(store, sub, hd(evs))
            flaky_loop(store, name, parent, sub, seen)

          true ->
            Subscriptions.ack_event(store, sub, List.last(evs))
            flaky_loop(store, name, parent, sub, seen)
        end

      {:subscribed, _} ->
        flaky_loop(store, name, parent, sub, seen)

      :stop ->
        send(parent, {:final, name, Enum.reverse(seen)})
    end
  end

  test "crashing subscribers and concurrent writers: every event, in order", %{store: s} do
    total = 3000
    names = ["flaky-1", "flaky-2", "flaky-3"]
    parent = self()

    writers =
      for w <- 1..4 do
        Task.async(fn ->
          Enum.reduce_while(Stream.cycle([1]), 0, fn _, written ->
            n = min(1 + :rand.uniform(9), div(total, 4) - written)

            if n <= 0 do
              {:halt, written}
            else
              {:ok, _} = Streams.append_events(s, "w#{w}-#{rem(written, 7)}", :any, events(n))
              {:cont, written + n}
            end
          end)
        end)
      end

    for {name, i} <- Enum.with_index(names), do: spawn(fn -> flaky(s, name, parent, i + 1) end)

    {incarnations, live} = supervise(s, names, total, %{}, %{})
    Enum.each(writers, &Task.await/1)

    # the test means something only if subscribers did crash
    assert incarnations |> Map.values() |> List.flatten() |> length() > 0 or
             map_size(incarnations) > 0

    for name <- names do
      runs = Map.get(incarnations, name, []) ++ [Map.fetch!(live, name)]

      for run <- runs do
        assert run == Enum.sort(run) and run == Enum.dedup(run), "#{name}: out of order"
      end

      seen = runs |> List.flatten() |> Enum.uniq() |> Enum.sort()
      assert seen == Enum.to_list(1..total), "#{name}: gap"
    end
  end

  # Restart crashed subscribers until every name has seen `total`; then
  # stop the last incarnation of each and collect what it saw.
  defp supervise(s, names, total, incarnations, live) do
    if Enum.all?(names, &match?({^total, _}, Map.get(live, &1))) do
      finals =
        for name <- names, into: %{} do
          {_, pid} = Map.fetch!(live, name)
          send(pid, :stop)

          # it may have crashed after its last report: then that is its record
          receive do
            {:final, ^name, seen} -> {name, seen}
            {:retry, ^name, seen, ^pid} -> {name, seen}
          after
            5_000 -> flunk("no final report from #{name}")
          end
        end

      {incarnations, finals}
    else
      receive do
        {:progress, name, last, pid} ->
          supervise(s, names, total, incarnations, Map.put(live, name, {last, pid}))

        {:retry, name, seen, pid} ->
          parent = self()
          Process.sleep(20)
          spawn(fn -> flaky(s, name, parent, :rand.uniform(1000)) end)
          incarnations = Map.update(incarnations, name, [seen], &[seen | &1])
          # a crashed incarnation is not the one to wait for any more
          live = if match?({_, ^pid}, live[name]), do: Map.delete(live, name), else: live
          supervise(s, names, total, incarnations, live)
      after
        20_000 -> flunk("subscribers stalled at #{inspect(live)}")
      end
    end
  end

  test "slow subscribers behind fast writers go back to the store and return: each event once, in order",
       %{store: s} do
    total = 30_000
    parent = self()

    subs =
      for i <- 1..2 do
        spawn_link(fn ->
          {:ok, sub} =
            Subscriptions.subscribe_to(s, "slow#{i}", {:by_stream, "$all"}, self(), buffer_size: 100)

          send(parent, {:sub, i, sub})
          send(parent, {:count, i, count_all(s, sub, 0, 0, total, 2)})
        end)
      end

    subscriptions = for i <- 1..length(subs), do: receive(do: ({:sub, ^i, sub} -> sub))

    writers =
      for w <- 1..4 do
        Task.async(fn ->
          for _ <- 1..div(total, 4 * 500),
              do: {:ok, _} = Streams.append_events(s, "fast#{w}", :any, events(500))
        end)
      end

    Enum.each(writers, &Task.await(&1, 60_000))
    # the writers outran the subscribers: their subscriptions read from the store
    assert wait_until(fn -> Enum.all?(subscriptions, &:sys.get_state(&1).sub.catching_up) end)

    for i <- 1..2, do: assert_receive({:count, ^i, ^total}, 120_000)
  end

  test "a million events through ten persistent subscriptions, each seen once", %{store: s} do
    total = 1_000_000

    for _ <- 1..div(total, 1000),
        do: {:ok, _} = Streams.append_events(s, "bulk", :any, events(1000))

    parent = self()

    for i <- 1..10 do
      spawn_link(fn ->
        {:ok, sub} =
          Subscriptions.subscribe_to(s, "m#{i}", {:by_stream, "$all"}, self(), buffer_size: 5000)

        send(parent, {:count, i, count_all(s, sub, 0, 0, total)})
      end)
    end

    for i <- 1..10 do
      assert_receive {:count, ^i, ^total}, 300_000
    end
  end

  # Count distinct positions in order; a repeat (redelivery) would have to
  # be at or below the last seen.
  defp count_all(s, sub, last, count, total, pause_ms \\ 0)

  defp count_all(_s, _sub, _last, count, total, _pause_ms) when count == total, do: count

  defp count_all(s, sub, last, count, total, pause_ms) do
    receive do
      {:events, evs} ->
        {last, count} =
          Enum.reduce(evs, {last, count}, fn e, {l, c} ->
            cond do
              e.position == l + 1 -> {e.position, c + 1}
              e.position <= l -> {l, c}
              true -> raise "gap: #{l} then #{e.position}"
            end
          end)

        if pause_ms > 0, do: Process.sleep(pause_ms)
        Subscriptions.ack_event(s, sub, List.last(evs))
        count_all(s, sub, last, count, total, pause_ms)

      {:subscribed, _} ->
        count_all(s, sub, last, count, total, pause_ms)
    after
      60_000 -> count
    end
  end
end
