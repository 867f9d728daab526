defmodule ExESDB.Chaos.Workload do
  @moduledoc false
  # N clients appending to a mix of streams with every expected-version
  # kind and reading them, plus subscribers holding a persistent
  # subscription to $all, against a list of nodes; then the final state of
  # every replica, the checker's verdict, and (with :results_dir) the
  # history, the anomalies and a summary as JSON lines.
  #
  # Clients and subscribers run in this VM and reach the nodes through the
  # target module (ExESDB.Chaos.Target), so one monotonic clock times every
  # operation: an operation's recorded interval contains its real one.
  #
  # Options: :store (required), :nodes ([node()]), :target
  # (ExESDB.Chaos.Target.Local), :clients (4), :ops per client (100) or
  # :duration_ms (wins when given), :streams (shared streams, 6),
  # :until_nemesis (true: clients run until the nemesis returns; wins
  # over both), :subscribers (1), :seed, :catch_up_ms (10,000: how long subscribers may
  # take to see the last event), :settle_ms (10,000: how long replicas may
  # take to hold the same number of events), :consistency (of the reads,
  # the target's by default: :local where a read may lag), :nemesis (a
  # function run beside the clients, awaited before the final state: the
  # faults; given the history when it takes an argument, to record them),
  # :replicas (the nodes whose final state is read: :nodes by default, the
  # survivors after a kill), :extend (fn ops, verdict -> verdict: more
  # checks and figures, before the results are written), :results_dir,
  # :label, :barrier_reads (percent of the reads made linearizable by a
  # barrier first, target.barrier_read/3: 0), :shared_subscribers (n
  # subscribers of one more subscription, partitioned by stream: 0),
  # :shared_node (the node every shared subscriber subscribes through;
  # without it, subscriber i through node i: a C node store owns a
  # subscription's name per C node, so there they share one node),
  # :resubscribe (false; true: subscribers do not follow the leader with
  # the store, they monitor their subscription and subscribe again,
  # through any node, when it goes down, as a restarting handler does).
  # env_opts/0 reads ESDB_CHAOS_CLIENTS, ESDB_CHAOS_OPS,
  # ESDB_CHAOS_SECONDS, ESDB_CHAOS_RATE (:rate, operations per second per
  # client; unpaced without) and ESDB_CHAOS_RESULTS.

  alias ExESDB.Chaos.{Checker, History, JSON}
  alias ExESDB.NewEvent

  @kinds [:any, :no_stream, :stream_exists, :exact]
  @epoch 200

  def env_opts do
    [
      clients: env_int("ESDB_CHAOS_CLIENTS"),
      ops: env_int("ESDB_CHAOS_OPS"),
      duration_ms: if(s = env_int("ESDB_CHAOS_SECONDS"), do: s * 1000),
      rate: env_int("ESDB_CHAOS_RATE"),
      results_dir: System.get_env("ESDB_CHAOS_RESULTS")
    ]
    |> Enum.reject(fn {_, v} -> v in [nil, ""] end)
  end

  defp env_int(name) do
    case System.get_env(name) do
      nil -> nil
      "" -> nil
      v -> String.to_integer(v)
    end
  end

  @doc "Run, check, write results; answers %{verdict:, history:, replicas:, results:}."
  def run(opts) do
    store = Keyword.fetch!(opts, :store)
    nodes = Keyword.get(opts, :nodes, [node()])
    target = Keyword.get(opts, :target, ExESDB.Chaos.Target.Local)
    seed = Keyword.get(opts, :seed, :erlang.unique_integer([:positive]))
    h = History.new()

    cfg = %{
      store: store,
      target: target,
      history: h,
      streams: Keyword.get(opts, :streams, 6),
      consistency: Keyword.get_lazy(opts, :consistency, &target.consistency/0),
      barrier_reads: Keyword.get(opts, :barrier_reads, 0),
      nodes: nodes,
      resubscribe: Keyword.get(opts, :resubscribe, false),
      # positions each subscription saw: when to stop waiting at the end
      seen: :ets.new(:chaos_seen, [:set, :public, write_concurrency: true]),
      stop: stop_rule(opts),
      # pacing: the client's n-th operation starts no earlier than n/rate s in
      interval: if(r = opts[:rate], do: 1000 / r)
    }

    subs =
      for i <- 1..Keyword.get(opts, :subscribers, 1)//1,
          do: start_subscriber(cfg, "sub-#{i}", "sub-#{i}", at(nodes, i), [])

    # one subscription shared by several subscribers, each stream's events
    # on one of them at a time (partition_by), in order
    shared =
      for i <- 1..Keyword.get(opts, :shared_subscribers, 0)//1,
          do:
            start_subscriber(cfg, "part-#{i}", "part", opts[:shared_node] || at(nodes, i),
              partition_by: &__MODULE__.partition/1,
              concurrency_limit: Keyword.get(opts, :shared_subscribers)
            )

    subs = subs ++ shared

    clients =
      for i <- 1..Keyword.get(opts, :clients, 4) do
        node = Enum.at(nodes, rem(i - 1, length(nodes)))
        Task.async(fn -> client(cfg, "c#{i}", node, seed + i) end)
      end

    started = System.monotonic_time(:millisecond)

    nemesis =
      Task.async(fn ->
        try do
          nemesis(Keyword.get(opts, :nemesis), h)
        after
          with {:flag, ref} <- cfg.stop, do: :atomics.put(ref, 1, 1)
        end
      end)

    Enum.each(clients, &Task.await(&1, :infinity))
    ran = System.monotonic_time(:millisecond) - started
    Task.await(nemesis, :infinity)
    finals = Keyword.get(opts, :replicas, nodes)
    replicas = settled(finals, target, store, Keyword.get(opts, :settle_ms, 10_000))
    last = replicas |> Map.values() |> Enum.map(&length(&1.all)) |> Enum.max(fn -> 0 end)
    Enum.each(subs, &stop_subscriber(&1, last, Keyword.get(opts, :catch_up_ms, 10_000)))
    :ets.delete(cfg.seen)

    ops = History.ops(h)
    {check_us, verdict} = :timer.tc(Checker, :check, [ops, replicas])
    verdict = put_in(verdict.stats[:workload_ms], ran)
    verdict = put_in(verdict.stats[:check_ms], div(check_us, 1000))
    verdict = Keyword.get(opts, :extend, fn _, v -> v end).(ops, verdict)
    :ets.delete(h.table)

    results =
      if dir = opts[:results_dir],
        do: write_results(dir, Keyword.get(opts, :label, "workload"), ops, verdict, opts, seed)

    %{verdict: verdict, history: ops, replicas: replicas, results: results}
  end

  defp at(nodes, i), do: Enum.at(nodes, rem(i - 1, length(nodes)))

  @doc "The shared subscription's partition of an event: its stream."
  def partition(event), do: event.stream_id

  defp nemesis(nil, _h), do: :ok
  defp nemesis(fun, _h) when is_function(fun, 0), do: fun.()
  defp nemesis(fun, h) when is_function(fun, 1), do: fun.(h)

  # Every replica's final state, once they all hold the same events at
  # the same positions and versions (a follower may still be applying
  # when the clients stop), or as they are after `ms` (the checker then
  # reports the divergence).
  @doc false
  def settled(nodes, target, store, ms) do
    deadline = System.monotonic_time(:millisecond) + ms
    settle(nodes, target, store, deadline)
  end

  defp settle(nodes, target, store, deadline) do
    replicas = Map.new(nodes, &{&1, target.final_state(&1, store)})
    states = replicas |> Map.values() |> Enum.uniq()

    if length(states) <= 1 or System.monotonic_time(:millisecond) > deadline do
      replicas
    else
      Process.sleep(50)
      settle(nodes, target, store, deadline)
    end
  end

  defp stop_rule(opts) do
    cond do
      opts[:until_nemesis] -> {:flag, :atomics.new(1, [])}
      ms = opts[:duration_ms] -> {:until, System.monotonic_time(:millisecond) + ms}
      true -> {:ops, Keyword.get(opts, :ops, 100)}
    end
  end

  defp done?({:ops, n}, done), do: done >= n
  defp done?({:until, t}, _), do: System.monotonic_time(:millisecond) >= t
  defp done?({:flag, ref}, _), do: :atomics.get(ref, 1) == 1

  ## clients

  defp client(cfg, name, node, seed) do
    :rand.seed(:exsss, {seed, 7, 11})
    start = System.monotonic_time(:millisecond)
    loop(cfg, %{name: name, node: node, known: %{}, fresh: 0, epoch: 0, start: start}, 0)
  end

  defp loop(cfg, c, done) do
    pace(cfg.interval, c.start, done)

    if done?(cfg.stop, done),
      do: :ok,
      else: loop(cfg, step(cfg, %{c | epoch: div(done, @epoch)}, :rand.uniform(100)), done + 1)
  end

  # 30% reads, 10% appends to a stream of the client's own with :no_stream,
  # the rest appends to shared streams with a random expected-version kind
  defp step(cfg, c, r) when r <= 30 do
    if cfg.barrier_reads > 0 and :rand.uniform(100) <= cfg.barrier_reads,
      do: barrier_read(cfg, c, shared(cfg, c)),
      else: read(cfg, c, shared(cfg, c))
  end

  defp step(cfg, c, r) when r <= 40 do
    stream = "#{c.name}-#{c.fresh}"
    append(cfg, %{c | fresh: c.fresh + 1}, stream, :no_stream)
  end

  defp step(cfg, c, _) do
    stream = shared(cfg, c)

    expected =
      case Enum.random(@kinds) do
        :exact -> Map.get(c.known, stream, 0)
        kind -> kind
      end

    append(cfg, c, stream, expected)
  end

  # Shared streams change every @epoch operations of a client (clients
  # move at about the same pace, so they still meet on them): reads of a
  # whole stream stay short in a long run.
  defp pace(nil, _, _), do: :ok

  defp pace(interval, start, done) do
    wait = round(start + done * interval) - System.monotonic_time(:millisecond)
    if wait > 0, do: Process.sleep(wait)
  end

  defp shared(cfg, c), do: "s-#{c.epoch}-#{:rand.uniform(cfg.streams) - 1}"

  defp read(cfg, c, stream) do
    op = %{type: :read, stream: stream, consistency: cfg.consistency}

    case History.run(cfg.history, c.name, c.node, op, fn ->
           cfg.target.read_stream(c.node, cfg.store, stream)
         end) do
      {:ok, ids} -> put_in(c.known[stream], length(ids))
      _ -> c
    end
  end

  # A linearizable read: a barrier on the client's node, then the read
  # there; it must see every append acknowledged before it was invoked.
  defp barrier_read(cfg, c, stream) do
    op = %{type: :read, stream: stream, consistency: :linearizable}

    case History.run(cfg.history, c.name, c.node, op, fn ->
           cfg.target.barrier_read(c.node, cfg.store, stream)
         end) do
      {:ok, ids} -> put_in(c.known[stream], length(ids))
      _ -> c
    end
  end

  defp append(cfg, c, stream, expected) do
    events = for i <- 1..:rand.uniform(3), do: NewEvent.new(event_type: "chaos", data: {c.name, i})
    attempt(cfg, c, stream, expected, events, 1, false)
  end

  # An outcome-unknown append is retried once with the same events,
  # marked as a retry (`retry: true`), as a client following the
  # documented rule does: unmarked, an :any retry after other appends
  # writes the events again.
  defp attempt(cfg, c, stream, expected, events, tries, retry?) do
    op = %{
      type: :append,
      stream: stream,
      expected: expected,
      retry: retry?,
      event_ids: Enum.map(events, & &1.event_id)
    }

    result =
      History.run(cfg.history, c.name, c.node, op, fn ->
        cfg.target.append(c.node, cfg.store, stream, expected, events, retry: retry?)
      end)

    case {result, History.outcome(result)} do
      {{:ok, v}, _} -> put_in(c.known[stream], v)
      {{:ok, v, _}, _} -> put_in(c.known[stream], v)
      {_, :unknown} when tries > 0 -> attempt(cfg, c, stream, expected, events, tries - 1, true)
      _ -> c
    end
  end

  ## subscribers

  # `client` subscribes to `name` (several clients may share one name);
  # `extra`: more subscribe_to options.
  defp start_subscriber(cfg, client, name, node, extra) do
    parent = self()
    sc = %{client: client, name: name, node: node, extra: extra, shared: extra != []}

    pid =
      spawn_link(fn ->
        Process.flag(:message_queue_data, :off_heap)
        sub = subscribe(cfg, sc, [node], System.monotonic_time(:millisecond) + 60_000)
        send(parent, {:subscribed, self()})
        deliver(cfg, sc, sub, 0)
      end)

    receive do
      {:subscribed, ^pid} -> pid
    end
  end

  # Subscribe through the first of `nodes` that takes it (with
  # :resubscribe, through each node in turn, until `deadline`); answers
  # the subscription, monitored with :resubscribe.
  defp subscribe(cfg, sc, [node | rest], deadline) do
    extra = if cfg.resubscribe, do: [follow_leader: false] ++ sc.extra, else: sc.extra
    op = %{type: :subscribe, subscription: sc.name, selector: {:by_stream, "$all"}}
    op = if sc.shared, do: Map.put(op, :partition_by, :stream), else: op

    case History.run(cfg.history, sc.client, node, op, fn ->
           if extra == [],
             do: cfg.target.subscribe(node, cfg.store, sc.name, op.selector, self()),
             else: cfg.target.subscribe(node, cfg.store, sc.name, op.selector, self(), extra)
         end) do
      {:ok, sub} ->
        if cfg.resubscribe, do: Process.monitor(sub)
        sub

      error ->
        if not cfg.resubscribe or System.monotonic_time(:millisecond) > deadline,
          do: raise("#{sc.client} could not subscribe to #{sc.name}: #{inspect(error)}")

        Process.sleep(100)
        subscribe(cfg, sc, rest ++ [node], deadline)
    end
  end

  defp resubscribe(cfg, sc) do
    nodes = Enum.shuffle(cfg.nodes)
    subscribe(cfg, sc, nodes, System.monotonic_time(:millisecond) + 120_000)
  end

  # (in cluster mode a subscription that followed a new leader says so
  # with {:subscribed, new}: acks go to that one from then on; one that
  # went down with :resubscribe is subscribed again: every message of the
  # old one came before its DOWN)
  defp deliver(cfg, sc, sub, top) do
    receive do
      {:subscribed, new} ->
        deliver(cfg, sc, new, top)

      {:events, evs} ->
        top = record(cfg, sc, sub, evs, top)
        deliver(cfg, sc, sub, top)

      {:DOWN, _, :process, ^sub, _} ->
        deliver(cfg, sc, resubscribe(cfg, sc), top)

      {:stop, from, last, deadline} ->
        drain(cfg, sc, sub, top, last, deadline)
        send(from, {:stopped, self()})
    end
  end

  # Keep taking deliveries until the subscription (all its subscribers)
  # saw every position up to the last or the deadline passed (the
  # checker then reports what was missed).
  defp drain(cfg, sc, sub, top, last, deadline) do
    wait = max(deadline - System.monotonic_time(:millisecond), 0)

    if seen(cfg, sc.name) >= last do
      :ok
    else
      receive do
        {:subscribed, new} ->
          drain(cfg, sc, new, top, last, deadline)

        {:events, evs} ->
          drain(cfg, sc, sub, record(cfg, sc, sub, evs, top), last, deadline)

        {:DOWN, _, :process, ^sub, _} ->
          drain(cfg, sc, resubscribe(cfg, sc), top, last, deadline)
      after
        min(wait, 100) -> if wait > 0, do: drain(cfg, sc, sub, top, last, deadline)
      end
    end
  end

  defp seen(cfg, name) do
    case :ets.lookup(cfg.seen, name) do
      [{_, n}] -> n
      [] -> 0
    end
  end

  defp record(cfg, sc, sub, evs, top) do
    for e <- evs do
      History.record(cfg.history, sc.client, sc.node, %{
        type: :deliver,
        subscription: sc.name,
        event_id: e.event_id,
        stream: e.stream_id,
        version: e.stream_version,
        position: e.position
      })

      if :ets.insert_new(cfg.seen, {{sc.name, e.position}}),
        do: :ets.update_counter(cfg.seen, sc.name, 1, {sc.name, 0})

      # a shared subscription's events of other partitions are not this
      # subscriber's to acknowledge: each one is
      if sc.shared, do: cfg.target.ack(sc.node, cfg.store, sub, e)
    end

    if not sc.shared, do: cfg.target.ack(sc.node, cfg.store, sub, List.last(evs))
    max(top, List.last(evs).position)
  end

  defp stop_subscriber(pid, last, ms) do
    send(pid, {:stop, self(), last, System.monotonic_time(:millisecond) + ms})

    receive do
      {:stopped, ^pid} -> :ok
    end
  end

  ## results

  defp write_results(dir, label, ops, verdict, opts, seed) do
    stamp = DateTime.utc_now() |> DateTime.to_iso8601(:basic) |> String.replace(~r/[^0-9TZ]/, "")
    path = Path.join(dir, "#{label}-#{stamp}")
    File.mkdir_p!(path)
    write_lines(Path.join(path, "history.jsonl"), ops)
    write_lines(Path.join(path, "anomalies.jsonl"), verdict.anomalies)

    summary =
      Map.merge(verdict.stats, %{
        label: label,
        valid: verdict.valid?,
        counts: verdict.counts,
        seed: seed,
        options: opts |> Keyword.drop([:target, :nemesis, :extend]) |> Map.new(),
        time_unit: "native monotonic, #{System.convert_time_unit(1, :second, :native)} per second"
      })

    write_lines(Path.join(path, "summary.jsonl"), [summary])
    path
  end

  defp write_lines(file, terms) do
    {:ok, f} = :file.open(file, [:write, :raw, :binary, {:delayed_write, 1_048_576, 1000}])
    Enum.each(terms, &(:ok = :file.write(f, [JSON.encode(&1), ?\n])))
    :ok = :file.close(f)
  end
end
