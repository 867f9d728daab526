defmodule ExESDB.Test.SubscriptionHelpers do
  @moduledoc false
  # What the subscription suites share: appending, and receiving what
  # subscribers are sent. Receives run in the calling test process.
  import ExUnit.Assertions

  alias ExESDB.{NewEvent, Streams, Subscriptions}

  def ev(type \\ "t", data \\ %{}), do: %NewEvent{event_type: type, data: data}

  def append(s, stream, n, type \\ "t", data \\ %{}) do
    {:ok, v} = Streams.append_events(s, stream, :any, for(_ <- 1..n, do: ev(type, data)))
    v
  end

  # Delivery follows an append's acknowledgement, later under load: the
  # first message is waited for this long.
  @first 3_000

  # Every event received within `timeout` of the previous one (the first
  # within @first).
  def receive_events(acc \\ [], timeout \\ 300) do
    receive do
      {:events, events} -> receive_events(acc ++ events, timeout)
    after
      if(acc == [], do: max(timeout, @first), else: timeout) -> acc
    end
  end

  def positions(events), do: Enum.map(events, & &1.position)

  # Whether a process is alive, on this node or another (in cluster mode
  # a persistent subscription runs on the leader).
  def alive?(pid), do: :erpc.call(node(pid), Process, :alive?, [pid])

  # Messages tagged `tag` until they hold `n` events, each waited for up
  # to 30 s (a commit's batches came more than 300 ms apart at load 40,
  # which ended the old wait for silence with nothing received).
  def receive_batches(tag, n, acc \\ [])
  def receive_batches(_tag, n, acc) when n <= 0, do: Enum.reverse(acc)

  def receive_batches(tag, n, acc) do
    receive do
      {^tag, events} -> receive_batches(tag, n - length(events), [events | acc])
    after
      30_000 -> Enum.reverse(acc)
    end
  end

  # Events received, acking each message, until n arrived, each message
  # waited for up to 30 s: a wait for 2 s of silence could end a delivery
  # of thousands of events early on a 3-node cluster at load 40 (what
  # came is compared whole by the caller; the bound only ends a failure).
  def ack_until(_s, _sub, n, acc) when length(acc) >= n, do: acc

  def ack_until(s, sub, n, acc) do
    receive do
      {:events, evs} ->
        Subscriptions.ack_event(s, sub, List.last(evs))
        ack_until(s, sub, n, acc ++ evs)
    after
      30_000 -> acc
    end
  end

  @doc """
  A :sys debug function for a persistent subscription, installed with
  `:sys.install(sub, {&shed_watch/3, {to, last_enqueued, nil}})`: tells
  `to` `{:shed, sub}` when a live delivery shed queued events (a shed is
  what moves `last_enqueued` back), then removes itself.
  """
  def shed_watch({to, last, _}, {:in, {:events, _, _}}, _name), do: {to, last, :delivery}

  def shed_watch({to, last, :delivery}, {:noreply, %{sub: %{last_enqueued: now}}}, _name)
      when now < last do
    send(to, {:shed, self()})
    :done
  end

  def shed_watch({to, _, _}, {:noreply, %{sub: %{last_enqueued: now}}}, _name), do: {to, now, nil}
  def shed_watch(acc, _event, _name), do: acc

  # ack_until/4 for a subscriber that calls `sample` (what it looks at)
  # after each message before acking it: the events and the samples.
  def slow_ack_until(s, sub, n, sample, acc \\ [], samples \\ [])

  def slow_ack_until(_s, _sub, n, _sample, acc, samples) when length(acc) >= n,
    do: {acc, Enum.reverse(samples)}

  def slow_ack_until(s, sub, n, sample, acc, samples) do
    receive do
      {:events, evs} ->
        taken = sample.()
        Subscriptions.ack_event(s, sub, List.last(evs))
        slow_ack_until(s, sub, n, sample, acc ++ evs, [taken | samples])
    after
      2000 -> {acc, Enum.reverse(samples)}
    end
  end

  # Every {position, data} received, collecting garbage after each message
  # (what frees a message's memory) and making new terms.
  # Collects until `want` events arrived (or 30 s without one: the caller's
  # assertion then shows what is missing), collecting garbage between
  # messages so that later messages reuse freed memory.
  def collect_collecting_garbage(acc, want) when length(acc) >= want, do: acc

  def collect_collecting_garbage(acc, want) do
    receive do
      {:events, evs} ->
        acc = acc ++ Enum.map(evs, &{&1.position, &1.data})
        :erlang.garbage_collect()
        # new terms in place of the freed ones
        _ = Enum.map(1..100_000, &{&1, &1 * 2})
        :erlang.garbage_collect()
        collect_collecting_garbage(acc, want)
    after
      30_000 -> acc
    end
  end

  def receive_all(acc \\ []) do
    receive do
      msg -> receive_all([msg | acc])
    after
      100 -> Enum.reverse(acc)
    end
  end

  # A process that sends what it is sent as {:forwarded, events}.
  def spawn_forwarder(to) do
    spawn_link(fn ->
      Stream.repeatedly(fn -> receive(do: ({:events, evs} -> send(to, {:forwarded, evs}))) end)
      |> Stream.run()
    end)
  end

  # A process that sends what it is sent as {tag, events}.
  def spawn_fwd(tag) do
    me = self()
    spawn(fn -> fwd(me, tag) end)
  end

  def fwd(to, tag) do
    receive do
      {:events, events} -> send(to, {tag, events})
    end

    fwd(to, tag)
  end

  def collect(tag, acc \\ []) do
    receive do
      {^tag, events} -> collect(tag, acc ++ events)
    after
      if(acc == [], do: @first, else: 300) -> acc
    end
  end

  @doc "Wait until `pid` is gone."
  def await_down(pid) do
    ref = Process.monitor(pid)
    assert_receive {:DOWN, ^ref, :process, ^pid, reason}, 5_000
    reason
  end

  @doc "Poll `fun` until it is truthy, at most `ms` milliseconds; flunk then."
  def wait_until(fun, ms \\ 5_000) do
    deadline = System.monotonic_time(:millisecond) + ms
    poll(fun, deadline)
  end

  defp poll(fun, deadline) do
    cond do
      fun.() ->
        :ok

      System.monotonic_time(:millisecond) > deadline ->
        flunk("condition not met in time")

      true ->
        Process.sleep(5)
        poll(fun, deadline)
    end
  end

  @doc "The store's subscriber group memberships now."
  def memberships(s) do
    {:ok, %{subscribers: n}} = ExESDB.System.stats(s)
    n
  end
end
