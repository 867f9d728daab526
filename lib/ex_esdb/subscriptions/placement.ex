defmodule ExESDB.Subscriptions.Placement do
  @moduledoc false
  # Cluster mode: a persistent subscription owns a checkpoint, so it runs
  # once per cluster, on the leader, and follows leadership. One of these
  # per node and store:
  #
  #   * subscribe_to and delete_subscription run on the leader (here when
  #     this node leads, else over :erpc), tried again while no leader is
  #     known or leadership moves, within the store's timeout. A start
  #     there reads its checkpoint after a barrier: linearizably, with
  #     every write acknowledged before it;
  #   * it watches this node's replica: while this node does not lead,
  #     every persistent subscription running here stops with
  #     {:shutdown, :leader_moved} (writing its checkpoint only where it
  #     is still the leader: its writes go to this replica alone);
  #   * it holds the attachments of its node's subscribers (who, to which
  #     subscription, with which options). When a subscription stops
  #     because leadership moved ({:shutdown, :leader_moved}), its node
  #     went (:noconnection) or it was gone before the attachment was
  #     made (:noproc), each of its subscribers still alive is
  #     subscribed again on the leader: the subscription starts there
  #     from its replicated checkpoint, the subscriber gets
  #     {:subscribed, new_subscription} and the events after the
  #     checkpoint again (at least once, in order, no gap). Not those
  #     subscribed with follow_leader: false, which subscribe again
  #     themselves (a Commanded handler restarts on its subscription's
  #     DOWN: moving it too raced its restart, which then found the name
  #     held on the new leader by the move of its stopped self).
  use GenServer

  alias ExESDB.{Cluster, Store, Subscriptions}
  alias ExESDB.Subscriptions.Persistent
  require Logger

  # how often this node's leadership is looked at
  @poll 50
  # between tries while no leader takes the call
  @backoff 50
  # why a subscription stopped that makes its subscribers move with it
  # (:noproc: it was gone before its attachment was made, which a
  # leadership change right after its start does)
  @moved [{:shutdown, :leader_moved}, :noconnection, :noproc]

  def child_spec_for(%{db_type: :cluster, store_id: store_id} = options) do
    if Map.get(options, :backend) == :cnode,
      do: nil,
      else: %{id: __MODULE__, start: {__MODULE__, :start_link, [store_id]}}
  end

  def child_spec_for(_options), do: nil

  def start_link(store_id), do: GenServer.start_link(__MODULE__, store_id, name: name(store_id))

  defp name(store_id), do: :"exesdb_placement_#{store_id}"

  # ---- in the caller ----------------------------------------------------

  @doc "subscribe_to/5 in cluster mode: on the leader, then attached."
  def subscribe(s, name, selector, subscriber, opts) do
    deadline = now() + s.timeout

    case on_leader(s, :start_here, [s.store_id, name, selector, subscriber, opts]) do
      {:ok, pid} ->
        attach(s.store_id, pid, {name, selector, subscriber, opts})
        caught_up(s, deadline)
        {:ok, pid}

      error ->
        error
    end
  end

  @doc "delete_subscription/2 in cluster mode: on the leader."
  def delete(s, name) do
    deadline = now() + s.timeout

    with :ok <- on_leader(s, :delete_here, [s.store_id, name]) do
      caught_up(s, deadline)
      :ok
    end
  end

  # Read-your-writes, as the gateway's: the checkpoint written or deleted
  # in the leader's replica is in this node's too before the call answers
  # (a barrier: what the leader committed before it is applied here),
  # within the caller's time; best effort, the write stands either way.
  # Nothing to wait for where this node leads.
  defp caught_up(s, deadline) do
    case ExESDB.Backend.Cluster.info(s.handle) do
      {:ok, %{leader?: true}} -> :ok
      _ -> Cluster.barrier(s.store_id, max(deadline - now(), 1))
    end
  end

  @doc "The subscriber left the subscription: not to be moved with it."
  def detach(store_id, pid, subscriber) do
    # (where attach/3 may have put it)
    for n <- Enum.uniq([node(subscriber), node()]),
        do: GenServer.cast({name(store_id), n}, {:detach, pid, subscriber})

    :ok
  end

  # The attachment is held on the subscriber's node (its store's
  # Placement), which outlives the leader; here when it runs none.
  defp attach(store_id, pid, spec) do
    {_, _, subscriber, _} = spec

    with :error <- try_attach({name(store_id), node(subscriber)}, pid, spec),
         :error <- try_attach(name(store_id), pid, spec) do
      # (the subscription runs; it would not follow leadership)
      Logger.warning(
        "ExESDB subscription #{inspect(elem(spec, 0))}: #{inspect(subscriber)} not attached"
      )
    end
  end

  defp try_attach(placement, pid, spec) do
    GenServer.call(placement, {:attach, pid, spec}, 10_000)
  catch
    :exit, _ -> :error
  end

  # `fun` on the leader's node, tried again (backing off) while no leader
  # takes it, until the store's timeout.
  defp on_leader(s, fun, args) do
    deadline = now() + s.timeout
    try_leader(s, fun, args, deadline)
  end

  defp try_leader(s, fun, args, deadline) do
    reply =
      case Cluster.leader(s.store_id) do
        {:ok, nil} -> {:error, :no_quorum}
        # (with the time left: what runs there answers within it)
        {:ok, leader} when leader == node() -> apply(__MODULE__, fun, args ++ [left(deadline)])
        {:ok, leader} -> remote(leader, fun, args ++ [left(deadline)], left(deadline))
        {:error, _} = error -> error
      end

    cond do
      not retry?(reply) ->
        reply

      now() + @backoff < deadline ->
        Process.sleep(@backoff)
        try_leader(s, fun, args, deadline)

      true ->
        give_up(s, reply)
    end
  end

  # (what runs there answers within `timeout`, bounded by the same
  # deadline: the caller waits no longer than it asked)
  defp remote(node, fun, args, timeout) do
    :erpc.call(node, __MODULE__, fun, args, timeout)
  catch
    :error, {:erpc, :timeout} ->
      abandon(node, fun, args)
      timed_out(fun)

    :error, {:erpc, reason} ->
      {:error, {:unreachable, reason}}

    :exit, reason ->
      {:error, {:unreachable, reason}}
  end

  # A delete the leader did not answer in time may still be applied
  # there (it waits in the subscription's mailbox); a start is abandoned.
  defp timed_out(:delete_here), do: {:error, :outcome_unknown}
  defp timed_out(_fun), do: {:error, :timeout}

  # A start answered too late for its caller: the subscriber it added
  # leaves (one it adds after this is left by start_here/6 itself).
  defp abandon(node, :start_here, [store_id, name, _selector, subscriber, _opts, _timeout]),
    do: :erpc.cast(node, __MODULE__, :abandon_here, [store_id, name, subscriber])

  defp abandon(_node, _fun, _args), do: :ok

  defp retry?({:error, :not_leader}), do: true
  defp retry?({:error, {:not_leader, _}}), do: true
  defp retry?({:error, {:unreachable, _}}), do: true
  defp retry?({:error, r}), do: r in [:no_quorum, :store_not_started, :closed]
  defp retry?(_), do: false

  # Out of time: the gateway's words (ExESDB.Cluster).
  defp give_up(s, {:error, reason}) when reason in [:not_leader, :store_not_started, :closed] do
    case Cluster.leader(s.store_id) do
      {:ok, nil} -> {:error, :no_quorum}
      {:ok, leader} -> {:error, {:not_leader, leader}}
      _ -> {:error, reason}
    end
  end

  defp give_up(_s, {:error, {:unreachable, _}}), do: {:error, :no_quorum}
  defp give_up(_s, reply), do: reply

  # ---- on the leader ------------------------------------------------------

  @doc false
  def start_here(store_id, name, selector, subscriber, opts, timeout) do
    deadline = now() + timeout

    with {:ok, s} <- Store.fetch(store_id),
         :ok <- leading(s),
         # the checkpoint is read after everything acknowledged before
         :ok <- Cluster.barrier(store_id, left(deadline)),
         :ok <- leading(s) do
      # (its first checkpoint write is bounded by the deadline too)
      opts = Keyword.put(opts, :deadline, deadline)
      spec = {Persistent, {s, name, selector, subscriber, opts}}

      case Subscriptions.start_persistent(store_id, spec, left(deadline)) do
        # started or joined after the caller gave up: the subscriber leaves
        {:ok, pid} ->
          if now() < deadline, do: {:ok, pid}, else: leave(pid, subscriber, s.timeout)

        error ->
          error
      end
    end
  end

  @doc false
  def abandon_here(store_id, name, subscriber) do
    with {:ok, s} <- Store.fetch(store_id),
         {:ok, pid} <- Subscriptions.whereis_persistent(store_id, name),
         do: leave(pid, subscriber, s.timeout)
  end

  defp leave(pid, subscriber, timeout) do
    GenServer.call(pid, {:leave, subscriber}, timeout)
    {:error, :timeout}
  catch
    :exit, _ -> {:error, :timeout}
  end

  @doc "The names of the persistent subscriptions running (on the leader)."
  def running(s), do: on_leader(s, :running_here, [s.store_id])

  @doc false
  def running_here(store_id, _timeout) do
    with {:ok, s} <- Store.fetch(store_id),
         :ok <- leading(s),
         do: {:ok, Subscriptions.running_persistent(store_id)}
  end

  @doc "The process of the persistent subscription `name` (on the leader)."
  def whereis(s, name), do: on_leader(s, :whereis_here, [s.store_id, name])

  @doc false
  def whereis_here(store_id, name, _timeout) do
    with {:ok, s} <- Store.fetch(store_id),
         :ok <- leading(s),
         do: Subscriptions.whereis_persistent(store_id, name)
  end

  @doc false
  def delete_here(store_id, name, _timeout) do
    with {:ok, s} <- Store.fetch(store_id),
         :ok <- leading(s),
         do: Subscriptions.delete_persistent(store_id, s, name)
  end

  defp leading(s) do
    case ExESDB.Backend.Cluster.info(s.handle) do
      {:ok, %{leader?: true}} -> :ok
      {:ok, _} -> {:error, :not_leader}
      {:error, _} = error -> error
    end
  end

  # ---- the process ---------------------------------------------------------

  @impl true
  def init(store_id) do
    # terminate/2 moves this node's subscriptions when the store stops
    Process.flag(:trap_exit, true)
    send(self(), :poll)
    {:ok, %{store_id: store_id, attached: %{}}}
  end

  @impl true
  def handle_call({:attach, pid, {_, _, subscriber, _} = spec}, _from, state) do
    entry = %{
      pid: pid,
      ref: Process.monitor(pid),
      subscriber: subscriber,
      subscriber_ref: Process.monitor(subscriber),
      spec: spec
    }

    {:reply, :ok, put_in(state.attached[make_ref()], entry)}
  end

  @impl true
  def handle_cast({:detach, pid, subscriber}, state) do
    {gone, kept} =
      Enum.split_with(state.attached, fn {_, e} -> e.pid == pid and e.subscriber == subscriber end)

    Enum.each(gone, fn {_, e} -> forget(e) end)
    {:noreply, %{state | attached: Map.new(kept)}}
  end

  @impl true
  def handle_info(:poll, state) do
    with {:ok, s} <- Store.fetch(state.store_id),
         {:ok, %{leader?: false}} <- ExESDB.Backend.Cluster.info(s.handle),
         do: stop_subscriptions(state.store_id)

    Process.send_after(self(), :poll, @poll)
    {:noreply, state}
  end

  def handle_info({:DOWN, ref, :process, _pid, reason}, state) do
    case Enum.find(state.attached, fn {_, e} -> ref in [e.ref, e.subscriber_ref] end) do
      {key, e} ->
        forget(e)
        if ref == e.ref and reason in @moved and follows?(e), do: move(state.store_id, e)
        {:noreply, %{state | attached: Map.delete(state.attached, key)}}

      nil ->
        {:noreply, state}
    end
  end

  def handle_info({:EXIT, _from, reason}, state), do: {:stop, reason, state}
  def handle_info(_other, state), do: {:noreply, state}

  # The store stopping here: its subscriptions (when this node led) stop
  # as moved, so their subscribers elsewhere follow them to the next
  # leader; this node's subscribers leave theirs, wherever they run (as
  # they would end with a single-node store).
  @impl true
  def terminate(_reason, state) do
    stop_subscriptions(state.store_id)

    for {_, e} <- state.attached do
      try do
        GenServer.call(e.pid, {:leave, e.subscriber}, 1_000)
      catch
        :exit, _ -> :ok
      end
    end

    :ok
  end

  defp follows?(%{spec: {_, _, _, opts}}), do: Keyword.get(opts, :follow_leader, true)

  defp forget(e) do
    Process.demonitor(e.ref, [:flush])
    Process.demonitor(e.subscriber_ref, [:flush])
  end

  # Every persistent subscription running on this node.
  defp stop_subscriptions(store_id) do
    for {_name, pid} <- registered(store_id), Subscriptions.persistent?(pid) do
      ref = Process.monitor(pid)
      Process.exit(pid, {:shutdown, :leader_moved})

      receive do
        {:DOWN, ^ref, _, _, _} -> :ok
      after
        5_000 -> Process.demonitor(ref, [:flush])
      end
    end

    :ok
  catch
    # the registry is gone (the store's system stopping)
    :error, _ -> :ok
  end

  # The subscriptions' names (binaries) and processes in this node's registry.
  defp registered(store_id) do
    Subscriptions.registry(store_id)
    |> Registry.select([{{:"$1", :"$2", :_}, [], [{{:"$1", :"$2"}}]}])
    |> Enum.filter(fn {name, _} -> is_binary(name) end)
  end

  # Subscribe the subscriber again on the leader, from a process of its
  # own (an election can take a while), until it is done, the subscriber
  # is gone, or the leader refuses it for good.
  defp move(store_id, e) do
    spawn(fn ->
      ref = Process.monitor(e.subscriber)
      resubscribe(store_id, e.spec, ref)
    end)
  end

  defp resubscribe(store_id, {name, selector, subscriber, opts} = spec, ref) do
    receive do
      {:DOWN, ^ref, _, _, _} -> :ok
    after
      0 ->
        reply =
          with {:ok, s} <- Store.fetch(store_id),
               do: subscribe(s, name, selector, subscriber, opts)

        case reply do
          {:ok, _pid} ->
            :ok

          # this node's store stopped: nothing to subscribe through
          {:error, :store_not_started} ->
            :ok

          {:error, reason} when reason in [:timeout, :no_quorum] ->
            Process.sleep(@backoff)
            resubscribe(store_id, spec, ref)

          {:error, {:not_leader, _}} ->
            Process.sleep(@backoff)
            resubscribe(store_id, spec, ref)

          {:error, reason} ->
            Logger.warning(
              "ExESDB subscription #{inspect(name)}: #{inspect(subscriber)} could not " <>
                "follow it to the new leader: #{inspect(reason)}"
            )
        end
    end
  end

  defp now, do: System.monotonic_time(:millisecond)
  defp left(deadline), do: max(deadline - now(), 1)
end
