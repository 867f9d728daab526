defmodule ExESDB.Subscriptions.Persistent.StateModelTest do
  # Persistent.State driven as its process drives it, against a model
  # store, by random interleavings of appends (some fan-outs lost: a gap),
  # mailbox messages (deliveries and reads, in order), acks, subscribers
  # joining and dying. Checked all along: nothing is handed out while a
  # subscriber holds it or after its ack, the checkpoint never passes an
  # unacked event; at the end every event was acked and the checkpoint is
  # the store's end. Runs scale with ESDB_STATE_MODEL_RUNS.
  use ExUnit.Case, async: true

  alias ExESDB.Subscriptions.Persistent.State

  @runs String.to_integer(System.get_env("ESDB_STATE_MODEL_RUNS", "4"))

  # {options, append sizes, 1 in how many fan-outs is lost, steps}
  @variants %{
    plain: {[buffer_size: 50, concurrency_limit: 3], [1, 1, 3, 50, 400], 20, 300},
    filter:
      {[buffer_size: 50, concurrency_limit: 3, filter: {:payload, %{odd: true}}], [1, 3, 50, 400],
       20, 300},
    partition:
      {[buffer_size: 20, concurrency_limit: 3, partition_by: &__MODULE__.partition/1],
       [1, 1, 3, 20, 60], 20, 300},
    one_in_flight: {[buffer_size: 1, concurrency_limit: 2], [1, 1, 3, 20, 60], 20, 300},
    # subscribers far behind: the queue is cut and read again
    shed: {[buffer_size: 50, concurrency_limit: 2], [1500, 3000], 100, 60},
    # keeping only cursors of what is handed out: a subscriber that goes
    # leaves cursors that are read again from the store
    cursors_plain:
      {[buffer_size: 50, concurrency_limit: 3, hold: :cursors], [1, 1, 3, 50, 400], 20, 300},
    cursors_filter:
      {[buffer_size: 50, concurrency_limit: 3, hold: :cursors, filter: {:payload, %{odd: true}}],
       [1, 3, 50, 400], 20, 300},
    cursors_partition:
      {[
         buffer_size: 20,
         concurrency_limit: 3,
         hold: :cursors,
         partition_by: &__MODULE__.partition/1
       ], [1, 1, 3, 20, 60], 20, 300},
    cursors_one_in_flight:
      {[buffer_size: 1, concurrency_limit: 2, hold: :cursors], [1, 1, 3, 20, 60], 20, 300}
  }

  def partition(event), do: event.stream_id

  for variant <- Map.keys(@variants) do
    test "#{variant}: nothing skipped, nothing handed out twice, the checkpoint follows acks" do
      {opts, sizes, lost, steps} = @variants[unquote(variant)]
      filtered? = Keyword.has_key?(opts, :filter)

      sheds =
        Enum.sum(
          for seed <- 1..@runs do
            :rand.seed(:exsss, {seed, 7, 13})
            run(opts, sizes, lost, steps, filtered?, seed)
          end
        )

      if unquote(variant) == :shed, do: assert(sheds > 0, "no run cut its queue")
    end
  end

  defp ev(n),
    do: %{position: n, event_number: n, stream_id: "s#{rem(n, 7)}", data: %{odd: rem(n, 2) == 1}}

  # The model's state: the subscription, the store's end, the process's
  # mailbox, what each subscriber holds, what was acked.
  defp run(opts, sizes, lost, steps, filtered?, seed) do
    start = Enum.random([0, 0, 5])
    matches = fn e -> not filtered? or e.data.odd end

    m = %{
      st: %{State.new(:all, start, true, opts) | reading: true},
      store: 0,
      mailbox: [:catch_up],
      subs: %{},
      acked: MapSet.new(),
      next_sub: 0,
      contiguous_from: 1,
      seed: seed,
      matches: matches,
      start: start,
      sizes: sizes,
      lost: lost,
      sheds: 0
    }

    m = add_sub(m)
    m = Enum.reduce(1..steps, m, fn _, m -> step(m) end)
    # a last fan-out that arrives, then every subscriber acks what it holds
    m = m |> append(1, false) |> drain(0)

    want = for n <- (start + 1)..m.store//1, matches.(ev(n)), into: MapSet.new(), do: n
    missing = want |> MapSet.difference(m.acked) |> Enum.sort() |> Enum.take(10)
    assert missing == [], "seed #{seed}: never handed out #{inspect(missing)}"
    assert m.st.checkpoint == m.store, "seed #{seed}: checkpoint #{m.st.checkpoint} of #{m.store}"
    m.sheds
  end

  defp drain(m, n) when n > 200_000, do: flunk("seed #{m.seed}: no progress")

  defp drain(m, n) do
    held = Enum.find(m.subs, fn {_, l} -> l != [] end)

    cond do
      m.mailbox != [] -> drain(process(m), n + 1)
      held -> drain(ack(m, elem(held, 0), held |> elem(1) |> List.last() |> cursor()), n + 1)
      true -> m
    end
  end

  defp cursor(e), do: e.position

  defp step(m) do
    case :rand.uniform(10) do
      r when r <= 3 ->
        append(m, Enum.random(m.sizes), :rand.uniform(m.lost) == 1)

      r when r <= 6 ->
        process(m)

      # (one in four: an ack repeated, or stale, of a cursor acked before)
      r when r <= 8 ->
        case Enum.filter(m.subs, fn {_, l} -> l != [] end) do
          [] ->
            m

          held ->
            {pid, l} = Enum.random(held)

            if :rand.uniform(4) == 1 and MapSet.size(m.acked) > 0,
              do: ack(m, pid, Enum.random(m.acked)),
              else: ack(m, pid, cursor(Enum.random(l)))
        end

      9 ->
        if map_size(m.subs) < m.st.concurrency_limit, do: add_sub(m), else: m

      10 ->
        if map_size(m.subs) > 1, do: kill(m, Enum.random(Map.keys(m.subs))), else: m
    end
  end

  # A commit; its fan-out reaches the mailbox unless lost, and later ones
  # then vouch only for commits after it (the emitter's `since`).
  defp append(m, k, lost?) do
    last = m.store + k

    if lost?,
      do: %{m | store: last, contiguous_from: last + 1},
      else: %{
        m
        | store: last,
          mailbox: m.mailbox ++ [{:events, Enum.map((m.store + 1)..last, &ev/1), m.contiguous_from}]
      }
  end

  # What Persistent does with its next message.
  defp process(%{mailbox: []} = m), do: m

  defp process(%{mailbox: [:catch_up | rest]} = m),
    do: catch_up(%{m | mailbox: rest, st: State.read_done(m.st)})

  defp process(%{mailbox: [{:events, recs, since} | rest]} = m) do
    m = %{m | mailbox: rest}

    case State.live(m.st, recs, since) do
      {:dropped, _} ->
        m

      {:ok, st} ->
        sheds = if not m.st.catching_up and st.catching_up, do: m.sheds + 1, else: m.sheds
        %{m | st: st, sheds: sheds} |> dispatch() |> resume()

      {:gap, st} ->
        resume(%{m | st: st})
    end
  end

  # A page of a random size (the byte budget cuts pages short too).
  defp catch_up(%{st: %{catching_up: false}} = m), do: dispatch(m)

  defp catch_up(m) do
    if State.queue_full?(m.st) do
      dispatch(m)
    else
      from = State.read_from(m.st)
      upto = min(m.store, from + Enum.random([1, 7, State.page()]) - 1)
      next = if upto >= m.store, do: :eof, else: upto + 1
      m = dispatch(%{m | st: State.page_read(m.st, Enum.map(from..upto//1, &ev/1), next)})
      if next == :eof, do: m, else: resume(m)
    end
  end

  defp resume(m) do
    {st, read?} = State.resume_catch_up(m.st)
    %{m | st: st, mailbox: if(read?, do: m.mailbox ++ [:catch_up], else: m.mailbox)}
  end

  defp dispatch(m) do
    {st, deliveries} = State.dispatch(m.st)

    Enum.reduce(deliveries, %{m | st: st}, fn {pid, evs}, m ->
      for e <- evs do
        n = cursor(e)
        assert m.matches.(e) and n > m.start, "seed #{m.seed}: #{n} handed out"
        refute MapSet.member?(m.acked, n), "seed #{m.seed}: #{n} handed out after its ack"

        for {_, held} <- m.subs,
            do: refute(Enum.any?(held, &(cursor(&1) == n)), "seed #{m.seed}: #{n} held twice")
      end

      %{m | subs: Map.update!(m.subs, pid, &(&1 ++ evs))}
    end)
  end

  # An ack of an event the subscriber holds covers it and what was handed
  # to that subscriber before it (with partitions a lower cursor can come
  # after a higher one); of a cursor it does not hold (repeated, stale),
  # nothing.
  defp ack(m, pid, c) do
    held = m.subs[pid]

    {done, rest} =
      case Enum.find_index(held, &(cursor(&1) == c)) do
        nil -> {[], held}
        i -> Enum.split(held, i + 1)
      end

    acked = Enum.reduce(done, m.acked, &MapSet.put(&2, cursor(&1)))
    st = State.ack(m.st, pid, c)

    # (what is at or below the checkpoint before was checked then)
    for n <- (max(m.start, m.st.checkpoint) + 1)..st.checkpoint//1, m.matches.(ev(n)) do
      assert MapSet.member?(acked, n), "seed #{m.seed}: checkpoint #{st.checkpoint} past #{n}"
    end

    %{m | subs: Map.put(m.subs, pid, rest), acked: acked, st: st} |> dispatch() |> resume()
  end

  defp add_sub(m) do
    pid = {:subscriber, m.next_sub}
    st = State.add_subscriber(m.st, pid, make_ref())

    %{m | next_sub: m.next_sub + 1, subs: Map.put(m.subs, pid, []), st: st}
    |> dispatch()
    |> resume()
  end

  # (with hold: :cursors, what it held is read again from the store, as
  # Persistent does before it hands anything out)
  defp kill(m, pid) do
    st = State.remove_subscriber(m.st, pid)
    st = State.put_back(st, Enum.map(State.rereads(st), &ev/1))

    %{m | subs: Map.delete(m.subs, pid), st: st}
    |> dispatch()
    |> resume()
  end
end
