defmodule ExESDB.Backend.Cluster do
  @moduledoc """
  `ExESDB.Backend` of a cluster store (`db_type: :cluster`): the NIF's
  replica (`:ex_esdb_backend.cluster_open/3`) and the write gateway
  described in `ExESDB.Cluster`. Reads, subscriptions and maintenance are
  this node's replica's, through `ExESDB.Backend.NIF`; writes go to the
  leader.
  """
  @behaviour ExESDB.Backend

  alias ExESDB.Backend.{CallerRelay, Deadline, NIF}

  require Logger

  defstruct [:ref, :store_id, :nodes, :ids, :address, :id]

  @backoff_first 10
  @backoff_max 200
  # How often a try waiting on a remote leader looks whether this node's
  # replica saw leadership move (ms).
  @watch 50

  @impl true
  def open(path, opts) do
    {%{store_id: store_id, config: config} = cluster, opts} = Map.pop!(opts, :cluster)

    with {:ok, ref} <- :ex_esdb_backend.cluster_open(path, opts, config.nif) do
      # records this member, finishes a come-back, re-seeds when needed
      ExESDB.Cluster.Seeding.keep(
        self(),
        store_id,
        ref,
        config,
        Map.get(cluster, :path, path),
        Map.get(cluster, :file_mode, 0o600)
      )

      {:ok,
       %__MODULE__{
         ref: ref,
         store_id: store_id,
         nodes: config.nodes,
         ids: Map.new(config.nodes, fn {i, n} -> {n, i} end),
         address: config.nif.address,
         id: config.nif.id
       }}
    end
  end

  @impl true
  def close(h), do: :ex_esdb_backend.close(h.ref)

  @impl true
  def limits(h), do: :ex_esdb_backend.limits(h.ref)

  # The store as ExESDB.Backend.NIF takes it: this node's replica.
  defp local(store), do: %{store | handle: store.handle.ref}

  @doc false
  def info(h) do
    with {:ok, i} <- :ex_esdb_backend.cluster_info(h.ref) do
      {:ok,
       %{
         id: i.id,
         node: node(),
         address: h.address,
         leader: node_of(h, i.leader_id),
         leader?: i.leader,
         term: i.term,
         applied: i.applied,
         failure: i.failure,
         needs_copy: i.needs_copy,
         # raft's commit and last log index, and how long ago the raft
         # loop last ran (samplers: docs/RELIABILITY.md, issue 14)
         commit: i.commit,
         last_index: i.last_index,
         loop_age_us: i.loop_age_us
       }}
    end
  end

  # ---- the gateway ---------------------------------------------------------

  @impl true
  def submit(store, command, opts \\ []) do
    cond do
      # this replica alone (:not_leader unless it leads): a persistent
      # subscription's writes, made only while its node leads
      opts[:here] ->
        NIF.submit(local(store), command, opts)

      # Routed by one relay process per caller and store, so a caller's
      # async commands keep their order without blocking the caller.
      opts[:async] ->
        CallerRelay.async(__MODULE__, store.store_id, Keyword.fetch!(opts, :ref), fn ->
          route(store, command, store.timeout)
        end)

      # the caller's async commands still on their way land first
      true ->
        CallerRelay.sync(__MODULE__, store.store_id, fn -> route(store, command, store.timeout) end)
    end
  end

  # Every wait below ends by the caller's deadline (:infinity: none), so
  # a call answers within its timeout.
  defp route(store, command, timeout) do
    attempt(
      store,
      command,
      request(command),
      deadline(timeout),
      @backoff_first,
      false,
      {:error, :timeout}
    )
  end

  # A put or delete goes with a request id, the same in every try of the
  # call: the store records the ids it applied, and a try marked as a
  # retry (resubmission/1) whose first try it applied answers :ok and is
  # not applied again (applied twice, a put would overwrite another
  # writer's put made in between; a delete, a record put again since).
  @requests [:snapshot_put, :snapshot_delete, :checkpoint_put, :checkpoint_delete]

  @doc false
  def request(command) when is_tuple(command) and elem(command, 0) in @requests,
    do: {:request, :crypto.strong_rand_bytes(16), false, command}

  def request(command), do: command

  defp deadline(:infinity), do: :infinity
  defp deadline(timeout), do: now() + timeout

  # ms left before the deadline (0 once past it), or :infinity
  defp remaining(:infinity), do: :infinity
  defp remaining(deadline), do: max(deadline - now(), 0)

  # `maybe`: an earlier try may have been applied (its outcome unknown).
  # `last`: the last try's reply; out of time before this try (a backoff
  # sleep woken late on a loaded machine), it is the answer, so a loop
  # that never reached a leader still says who leads (finish/4).
  defp attempt(store, original, command, deadline, backoff, maybe, last) do
    remaining = remaining(deadline)
    reply = if remaining != 0, do: once(store, command, remaining), else: last
    maybe = maybe or unknown?(reply)

    if retry?(reply) and more_than?(remaining(deadline), backoff) do
      Process.sleep(backoff)
      next = resubmission(command)
      attempt(store, original, next, deadline, min(backoff * 2, @backoff_max), maybe, reply)
    else
      settle(original, maybe, finish(store, command, reply, deadline))
    end
  end

  # A try whose command may have reached the leader and been applied:
  # timed out there, or the call to it failed after it may have been sent.
  defp unknown?({:error, :outcome_unknown}), do: true
  defp unknown?({:error, {:unreachable, :not_connected}}), do: false
  defp unknown?({:error, {:unreachable, {:incompatible_release, _}}}), do: false
  defp unknown?({:error, {:unreachable, _}}), do: true
  defp unknown?(_), do: false

  @doc false
  # The answer of a loop whose tries replied `replies` (in order) and
  # whose last reply finish/4 mapped to `final`.
  def outcome(command, replies, final), do: settle(command, Enum.any?(replies, &unknown?/1), final)

  # After a try that may have been applied, an answer saying "not
  # written" (no leader, out of time) or "already gone" (a delete) is no
  # answer: the first try may be why. Answers the retry proves (a marked
  # append finds its events and answers the first result) stand.
  defp settle(_command, false, reply), do: reply
  # a barrier changes nothing: its answers are about this replica only
  defp settle(:barrier, true, reply), do: reply

  defp settle(command, true, {:error, reason} = e),
    do: if(not_written?(reason) or gone?(command, reason), do: {:error, :outcome_unknown}, else: e)

  defp settle(_command, true, reply), do: reply

  defp not_written?({:not_leader, _}), do: true
  defp not_written?({:unreachable, _}), do: true
  # a failed replica refuses before proposing (a C node's, which the C
  # node backend follows): that try wrote nothing, an earlier one may
  defp not_written?({:store_failed, _}), do: true
  defp not_written?(r), do: r in [:not_leader, :no_quorum, :timeout, :store_not_started, :closed]

  defp gone?({:delete_stream, _, _}, r), do: r in [:stream_deleted, :stream_not_found]
  defp gone?({:checkpoint_delete, _}, r), do: r == :subscription_not_found
  defp gone?({:snapshot_delete, _}, r), do: r == :snapshot_not_found
  defp gone?(_, _), do: false

  # Leadership moved or is not settled: try again with the same command.
  defp retry?({:error, :not_leader}), do: true
  defp retry?({:error, :outcome_unknown}), do: true
  defp retry?({:error, {:unreachable, _}}), do: true
  defp retry?({:error, :store_not_started}), do: true
  defp retry?({:error, :closed}), do: true
  defp retry?(_), do: false

  # An append tried again may have been applied already: marked, the
  # store looks for its events among the stream's last versions, not only
  # at its tail, and answers the original result (docs/FORMAT.md, "Retries").
  # A put or delete: marked, the store looks for its request id among the
  # last requests it applied, and answers :ok when it is there.
  @doc false
  def resubmission({:append, stream, {:retry, _} = expected, events}),
    do: {:append, stream, expected, events}

  def resubmission({:append, stream, expected, events}),
    do: {:append, stream, {:retry, expected}, events}

  def resubmission({:request, id, _retry, command}), do: {:request, id, true, command}

  def resubmission(command), do: command

  # One try: here when this node leads, else on the leader it knows.
  defp once(store, command, timeout) do
    h = store.handle

    case :ex_esdb_backend.cluster_info(h.ref) do
      {:ok, %{leader: true}} -> submit_here(store, command, timeout)
      {:ok, %{leader_id: 0}} -> {:error, :not_leader}
      {:ok, %{leader_id: id} = seen} -> remote(node_of(h, id), h, seen, command, timeout)
      # this node's store is closed: nothing to route from
      {:error, reason} -> {:error, {:here, reason}}
    end
  end

  @doc false
  def remote(nil, _h, _seen, _command, _timeout), do: {:error, :not_leader}

  def remote(node, h, seen, command, timeout) do
    # One deadline for the whole try: the connect and the call share the
    # time left (each had all of it: a try could take twice that).
    # Connected first, so a failure after this may follow the command
    # having been sent; a node that cannot be connected, or connected
    # with no time left, was sent nothing. The leader answers a little
    # before the caller's time is up (its own :timeout or
    # :outcome_unknown is more than "no answer"); the call itself ends
    # when the caller's time is up, or earlier when this node's replica
    # sees leadership move (await/4).
    deadline = deadline(timeout)

    with true <- connect(node, timeout),
         left when left != 0 <- remaining(deadline) do
      args = [h.store_id, command, leader_budget(left), seen.term, Deadline.wall(left)]
      req = :erpc.send_request(node, __MODULE__, :submit_on_leader, args)
      await(req, h, seen, deadline)
    else
      _ -> {:error, {:unreachable, :not_connected}}
    end
  catch
    :error, {:erpc, :timeout} ->
      {:error, :outcome_unknown}

    :error, {:erpc, reason} ->
      {:error, {:unreachable, reason}}

    # the leader runs a release without submit_on_leader/5 (a rolling
    # upgrade): nothing was submitted
    :error, {:exception, :undef, [{__MODULE__, :submit_on_leader, _, _} | _]} ->
      {:error, {:unreachable, {:incompatible_release, node}}}

    # or one without the request form of puts and deletes (request/1):
    # refused before it reached its store
    :error, {:exception, :function_clause, [{:ex_esdb_backend, :queue, _, _} | _]} ->
      {:error, {:unreachable, {:incompatible_release, node}}}

    # it raised or exited there, maybe after the submit
    :error, {:exception, reason, _} ->
      {:error, {:unreachable, {:exception, reason}}}

    :error, reason ->
      {:error, {:unreachable, reason}}

    :exit, reason ->
      {:error, {:unreachable, reason}}

    :throw, reason ->
      {:error, {:unreachable, {:throw, reason}}}
  end

  # The leader's reply, waited for in slices. A leader that does not
  # answer (paused, cut off) is replaced by an election the replica here
  # takes part in: once it reports another leader or a higher term than
  # when the try was sent (`seen`), the try is given up (its outcome
  # unknown) so the loop resends to the new leader, marked as a retry,
  # instead of waiting out the caller's whole timeout on the old one.
  defp await(req, h, seen, deadline) do
    case :erpc.wait_response(req, min(remaining(deadline), @watch)) do
      {:response, reply} ->
        reply

      :no_response ->
        if remaining(deadline) == 0 or moved?(h, seen),
          do: give_up(req),
          else: await(req, h, seen, deadline)
    end
  end

  # The reply if it came meanwhile; else the request is abandoned (a late
  # reply is dropped, not left in the caller's mailbox).
  defp give_up(req), do: :erpc.receive_response(req, 0)

  defp moved?(h, seen) do
    case :ex_esdb_backend.cluster_info(h.ref) do
      {:ok, %{term: term}} when term > seen.term -> true
      {:ok, %{leader: true}} -> true
      {:ok, %{leader_id: id}} when id not in [0, seen.leader_id] -> true
      _ -> false
    end
  end

  # Connected to `node` within `timeout`. Connecting to a node that does
  # not answer waits for distribution's setup time (net_setuptime, 7 s by
  # default) in net_kernel: waited for here only as long as the caller
  # may wait (a later try joins the same pending connection).
  defp connect(node, timeout) do
    if node in Node.list() do
      true
    else
      task = Task.async(fn -> Node.connect(node) end)

      case Task.yield(task, timeout) || Task.shutdown(task, :brutal_kill) do
        {:ok, connected} -> connected == true
        _ -> false
      end
    end
  end

  # Of a try's time left, the leader keeps the reply margin for its reply
  # to reach the caller before the caller's deadline (Deadline.margin/1).
  defp leader_budget(:infinity), do: :infinity
  defp leader_budget(timeout), do: timeout - Deadline.margin(timeout)

  defp more_than?(:infinity, _ms), do: true
  defp more_than?(left, ms), do: left > ms

  @doc false
  # On the leader, for a gateway elsewhere: submit to this replica and
  # answer the reply with this replica's applied index after it. `term`:
  # the term the gateway's replica was in when it sent the try. A try
  # that arrives in a later term is refused (never applied): the gateway
  # may have given it up long ago and resent it (a partition held it in
  # the TCP connection; it arrived after the heal, at a node leading
  # again, and was applied a second time). A marked resend finds an
  # earlier copy; a late first try could not find a later one. `until`:
  # the caller's deadline in wall-clock ms (:infinity: none); a try that
  # arrives after it, less the reply margin the gateway keeps (its
  # `timeout` is what is left of it), is refused ({:error, :timeout},
  # never applied): its caller answers without it and may send it again.
  # The margin absorbs a skew of the nodes' clocks up to it
  # (docs/CLUSTER.md, "Clocks").
  def submit_on_leader(store_id, command, timeout, term, until) do
    with {:ok, store} <- ExESDB.Store.fetch(store_id) do
      case :ex_esdb_backend.cluster_info(store.handle.ref) do
        {:ok, %{term: ^term}} ->
          if in_time?(store_id, timeout, until),
            do: submit_on_leader(store_id, command, timeout),
            else: {:error, :timeout}

        {:ok, _} ->
          {:error, :not_leader}

        {:error, _} = e ->
          e
      end
    end
  end

  # The gateway gave the leader `left - Deadline.margin(left)`: the same
  # margin, recomputed from that (Deadline.budget_margin/1).
  defp in_time?(_store_id, _timeout, :infinity), do: true

  defp in_time?(store_id, timeout, until) do
    margin = Deadline.budget_margin(timeout)
    now = System.system_time(:millisecond)
    if now >= until, do: overdue(store_id, now - until)
    now < until - margin
  end

  # A try past its caller's whole deadline on arrival: a slow network, or
  # this node's clock ahead of the gateway's. Logged once a minute.
  @overdue_every 60_000

  defp overdue(store_id, late) do
    key = {__MODULE__, :overdue_logged, store_id}
    t = System.monotonic_time(:millisecond)

    case :persistent_term.get(key, nil) do
      last when is_integer(last) and t - last < @overdue_every ->
        :ok

      _ ->
        # (a small integer replaced: no global GC)
        :persistent_term.put(key, t)

        Logger.warning(
          "ExESDB: #{node()} got a write for #{inspect(store_id)} #{late} ms past its " <>
            "caller's deadline (refused): a slow network or clocks apart (docs/CLUSTER.md, \"Clocks\")"
        )
    end
  end

  @doc false
  def submit_on_leader(store_id, command, timeout) do
    with {:ok, store} <- ExESDB.Store.fetch(store_id) do
      case submit_here(store, command, timeout) do
        {:error, {:undecodable, :unknown_atom}} ->
          # The caller's VM knows atoms of the command's terms that this
          # one does not (the store refuses to store what this VM could
          # not read back): make them here, as distribution would for a
          # term sent to us, and try once more.
          make_atoms(command)
          submit_here(store, command, timeout)

        reply ->
          reply
      end
    end
  end

  defp make_atoms({:term, bin}) when is_binary(bin) do
    _ = :erlang.binary_to_term(bin)
    :ok
  rescue
    ArgumentError -> :ok
  end

  defp make_atoms(t) when is_tuple(t), do: t |> Tuple.to_list() |> make_atoms()
  defp make_atoms(l) when is_list(l), do: Enum.each(l, &make_atoms/1)
  defp make_atoms(_), do: :ok

  # A barrier: a command that changes nothing (deleting a checkpoint of a
  # reserved name no subscription has) through the log; once the leader
  # applied it, everything committed before is applied there.
  @barrier {:checkpoint_delete, "ex_esdb:barrier"}

  defp submit_here(store, :barrier, timeout) do
    ref = store.handle.ref

    case :ex_esdb_backend.submit(ref, @barrier, timeout) do
      reply when reply in [:ok, {:error, :subscription_not_found}] ->
        applied(ref, :ok)

      e ->
        e
    end
  end

  # A put or delete goes in its request form only when every member's
  # node runs a release whose store knows request ids: a store of an
  # earlier release cannot read such a command and stops (fail-stop), so
  # during a rolling upgrade the plain command goes, as before request ids
  # (a resend whose first try was applied may then apply again).
  defp submit_here(store, {:request, _id, _retry, plain} = command, timeout) do
    if members_know_requests?(store),
      do: submit_command(store, command, timeout),
      else: submit_command(store, plain, timeout)
  end

  defp submit_here(store, command, timeout), do: submit_command(store, command, timeout)

  defp submit_command(store, command, timeout) do
    ref = store.handle.ref

    case :ex_esdb_backend.submit(ref, command, timeout) do
      {:error, _} = e ->
        e

      reply ->
        applied(ref, reply)
    end
  end

  # Every member asked (not only up to the first no), so that each one
  # not known yet is asked now.
  defp members_know_requests?(store) do
    case :ex_esdb_backend.cluster_members(store.handle.ref) do
      {:ok, ms} ->
        ms
        |> Enum.map(fn {id, _addr, _role} -> knows_requests?(node_of(store.handle, id)) end)
        |> Enum.all?()

      _ ->
        false
    end
  end

  @doc false
  # Whether `node` is known to run a release that knows request ids (this
  # module's request/1 came with them). Never waits: a node not known yet
  # is asked by a process of its own (one at a time per node) and counts
  # as no until it answers yes; a yes is kept (a node is not expected to
  # go back to an older release while in the cluster). So a leader's
  # first puts after its start go plain, and no put waits on a member
  # that is slow or stopped.
  def knows_requests?(nil), do: false
  def knows_requests?(n) when n == node(), do: true

  def knows_requests?(n) do
    :persistent_term.get({__MODULE__, :knows_requests, n}, false) or ask_later(n)
  end

  defp ask_later(n) do
    name = :"exesdb_knows_requests_#{n}"

    if Process.whereis(name) == nil do
      spawn(fn ->
        try do
          # :erlang's: Process.register/2 raises ArgumentError instead
          true = :erlang.register(name, self())
          ask_knows_requests(n)
        catch
          # another asker of that node registered first
          :error, :badarg -> :ok
        end
      end)
    end

    false
  end

  @doc false
  # Asks `node` now (at most 1 s): whether its release knows request ids;
  # a yes is kept for knows_requests?/1.
  def ask_knows_requests(nil), do: false

  def ask_knows_requests(n) do
    known =
      n == node() or
        (:erpc.call(n, Code, :ensure_loaded?, [__MODULE__], 500) and
           :erpc.call(n, :erlang, :function_exported, [__MODULE__, :request, 1], 500))

    if known, do: :persistent_term.put({__MODULE__, :knows_requests, n}, true)
    known
  catch
    _, _ -> false
  end

  # The reply with this replica's applied index after it; the replica
  # closing in between leaves the index unknown, and with it whether the
  # caller's next read sees the write.
  defp applied(ref, reply) do
    case :ex_esdb_backend.cluster_info(ref) do
      {:ok, %{applied: applied}} -> {:applied, applied, reply}
      _ -> {:error, :outcome_unknown}
    end
  end

  # Read-your-writes: wait until this replica applied what the leader had
  # when it answered (within the caller's timeout), then answer. For a
  # write that is best effort: it is committed, so past the timeout it
  # answers its result anyway. A barrier promises the replica caught up:
  # past the timeout it answers {:error, :timeout}.
  defp finish(store, command, {:applied, index, reply}, deadline) do
    case wait_applied(fn -> :ex_esdb_backend.cluster_info(store.handle.ref) end, index, deadline) do
      :not_reached when command == :barrier -> {:error, :timeout}
      _ -> reply
    end
  end

  defp finish(_store, _command, {:error, {:here, reason}}, _deadline), do: {:error, reason}

  # Out of time without reaching a leader: who leads as this node sees it.
  defp finish(store, _command, {:error, reason} = e, _deadline) do
    if leaderless?(reason),
      do: leaderless(:ex_esdb_backend.cluster_info(store.handle.ref), e, store.handle),
      else: e
  end

  defp finish(_store, _command, reply, _deadline), do: reply

  @doc false
  # The answer of a loop out of time without a leader taking the write,
  # from this node's view of leadership then (`info`): no leader known, a
  # leader elsewhere, or this node leading by now (the time ran out
  # before a try reached it: nothing was written, as after a withdrawn
  # write).
  def leaderless({:ok, %{leader: true}}, _e, _h), do: {:error, :timeout}
  def leaderless({:ok, %{leader_id: 0}}, _e, _h), do: {:error, :no_quorum}
  def leaderless({:ok, %{leader_id: id}}, _e, h), do: {:error, {:not_leader, node_of(h, id)}}
  # (no view of leadership either: no leader known)
  def leaderless(_info, {:error, r}, _h) when r == :not_leader or elem(r, 0) == :unreachable,
    do: {:error, :no_quorum}

  def leaderless(_info, e, _h), do: e

  # (a leader on an older release is reached, and says why it cannot write)
  defp leaderless?({:unreachable, {:incompatible_release, _}}), do: false
  defp leaderless?({:unreachable, _}), do: true
  defp leaderless?(reason), do: reason in [:not_leader, :store_not_started, :closed]

  @doc false
  # Until the replica `info` reports (a `cluster_info` reply) has applied
  # `index`: :ok, or :not_reached at `deadline` or when it cannot say.
  # The C node backend waits on its own C node with it too.
  def wait_applied(info, index, deadline) do
    case info.() do
      {:ok, %{applied: a}} when a >= index ->
        :ok

      {:ok, _} ->
        if more_than?(remaining(deadline), 0) do
          Process.sleep(1)
          wait_applied(info, index, deadline)
        else
          :not_reached
        end

      _ ->
        :not_reached
    end
  end

  defp now, do: System.monotonic_time(:millisecond)

  @doc false
  # The node of raft member `id`: a seed's from the seed list, a joiner's
  # or one that came back under a new id from the members recorded in
  # this replica (ExESDB.Cluster.Seeding; nil until its record is applied
  # here, except for this node's own).
  def node_of(_h, 0), do: nil
  def node_of(%{id: id}, id), do: node()
  def node_of(h, id), do: Map.get(h.nodes, id) || recorded_node(h, id)

  defp recorded_node(h, id) do
    case ExESDB.Cluster.Seeding.recorded(%{handle: h}) do
      {:ok, m} ->
        Enum.find_value(m, fn {n, i} -> i == id and ExESDB.Cluster.Seeding.node_named(n) end)

      _ ->
        nil
    end
  end

  @doc false
  # A member's id: the one it recorded (its latest), else a seed's, else
  # the one the node itself reports (a joiner not recorded yet); nil when
  # none of them knows it.
  def id_of(h, node) do
    recorded =
      case ExESDB.Cluster.Seeding.recorded(%{handle: h}) do
        {:ok, m} -> Map.get(m, Atom.to_string(node))
        _ -> nil
      end

    recorded || Map.get(h.ids, node) || reported_id(node, h.store_id)
  end

  defp reported_id(node, store_id) do
    case :erpc.call(node, ExESDB.Cluster, :info, [store_id], 5_000) do
      {:ok, %{id: id}} -> id
      _ -> nil
    end
  catch
    _, _ -> nil
  end

  @doc false
  # A membership change, run on the leader: :add (as a spare, then
  # assigned voter) or :remove.
  def on_leader(store, op, args) do
    h = store.handle

    case :ex_esdb_backend.cluster_info(h.ref) do
      {:ok, %{leader: true}} ->
        change_here(h.store_id, op, args)

      {:ok, %{leader_id: 0}} ->
        {:error, :no_quorum}

      {:ok, %{leader_id: l}} ->
        call_leader(node_of(h, l), :change_here, [h.store_id, op, args], 60_000)

      e ->
        e
    end
  end

  # A change run on the leader `node` (nil: one this node cannot name).
  # Out of time there, the change may or may not have been made; a node
  # that cannot be called is unreachable; the call failing there (its
  # process exited or raised) leaves the outcome unknown.
  @doc false
  def call_leader(nil, _fun, _args, _timeout), do: {:error, {:not_leader, nil}}

  def call_leader(node, fun, args, timeout) do
    :erpc.call(node, __MODULE__, fun, args, timeout)
  catch
    :error, {:erpc, :timeout} -> {:error, :outcome_unknown}
    :error, {:erpc, _} -> {:error, {:unreachable, node}}
    :exit, _ -> {:error, :outcome_unknown}
    :error, _ -> {:error, :outcome_unknown}
  end

  @doc false
  def change_here(store_id, op, args) do
    with {:ok, s} <- ExESDB.Store.fetch(store_id) do
      ref = s.handle.ref

      case {op, args} do
        {:add, [id, address]} ->
          # as a replace with no old id: a retry goes on where it stopped
          replace(ref, nil, id, address)

        {:remove, [id]} ->
          :ex_esdb_backend.cluster_remove(ref, id)

        {:replace, [old, id, address]} ->
          replace(ref, old, id, address)
      end
    end
  end

  # A member added (old nil), or one that came back under a new id
  # (ExESDB.Cluster.Seeding): its old id out first (it must not count in a quorum any more, and the
  # address is the same), then the new one in as a spare and made a
  # voter once raft caught it up. Each step is skipped when done, so a
  # retry after an unknown outcome goes on where it stopped.
  defp replace(ref, old, id, address) do
    with {:ok, ms} <- :ex_esdb_backend.cluster_members(ref),
         :ok <-
           if(List.keymember?(ms, old, 0), do: :ex_esdb_backend.cluster_remove(ref, old), else: :ok),
         :ok <-
           if(List.keymember?(ms, id, 0),
             do: :ok,
             else: :ex_esdb_backend.cluster_add(ref, id, address)
           ) do
      case List.keyfind(ms, id, 0) do
        {^id, _, :voter} -> :ok
        _ -> :ex_esdb_backend.cluster_assign(ref, id, :voter)
      end
    end
  end

  @doc false
  def transfer(store, node) do
    h = store.handle
    target = if node, do: id_of(h, node), else: 0

    with id when id != nil <- target,
         :ok <- can_lead(node, h.store_id) do
      case :ex_esdb_backend.cluster_info(h.ref) do
        {:ok, %{leader: true}} ->
          :ex_esdb_backend.cluster_transfer(h.ref, transferee(h, id))

        {:ok, %{leader_id: 0}} ->
          {:error, :no_quorum}

        {:ok, %{leader_id: l}} ->
          call_leader(node_of(h, l), :transfer_on_leader, [h.store_id, id], 60_000)

        e ->
          e
      end
    else
      nil -> {:error, {:unreachable, node}}
      {:error, _} = e -> e
    end
  end

  # A transfer named at a node whose replica cannot serve as leader (it
  # waits for a copy of a member's store, or it failed) is refused at
  # once: raft would hand it leadership, which it would only hand on (or
  # keep, failed), and the caller would get :ok or :timeout for a
  # leader that is not the one asked for. A node that does not answer
  # within @named_timeout is left to raft (down, its transfer times out);
  # longer than @pick_timeout: a loaded node's answer is worth waiting
  # for when it is the one named.
  @named_timeout 5_000

  defp can_lead(nil, _store_id), do: :ok

  defp can_lead(node, store_id) do
    case ask_info(node, store_id, @named_timeout) do
      {:ok, %{needs_copy: true}} -> {:error, {:cannot_lead, node}}
      {:ok, %{failure: f}} when f != nil -> {:error, {:cannot_lead, node}}
      _ -> :ok
    end
  end

  @doc false
  def transfer_on_leader(store_id, id) do
    with {:ok, s} <- ExESDB.Store.fetch(store_id),
         do: :ex_esdb_backend.cluster_transfer(s.handle.ref, transferee(s.handle, id))
  end

  # A transfer to no node in particular goes to the voter that applied
  # most among those that can serve (not failed, not waiting for a copy
  # of a member's store: raft's own choice, the first voter holding the
  # whole log, may be one waiting, which takes leadership only to hand
  # it on). 0 (raft's choice) when no voter's node answers in time (a
  # voter down, stopped or slow: no answer).
  @pick_timeout 1_000

  defp transferee(h, 0) do
    with {:ok, ms} <- :ex_esdb_backend.cluster_members(h.ref) do
      ms
      |> Enum.filter(fn {id, _, role} -> role == :voter and id != h.id end)
      |> Enum.map(fn {id, _, _} -> {id, node_of(h, id)} end)
      |> Enum.filter(fn {_id, n} -> n != nil end)
      |> Task.async_stream(
        fn {id, n} -> {id, ask_info(n, h.store_id, @pick_timeout)} end,
        timeout: @pick_timeout + 500,
        on_timeout: :kill_task
      )
      |> Enum.flat_map(fn
        {:ok, {id, {:ok, %{failure: nil, needs_copy: false, applied: a}}}} -> [{a, id}]
        _ -> []
      end)
      |> Enum.max(fn -> {0, 0} end)
      |> elem(1)
    else
      _ -> 0
    end
  catch
    _, _ -> 0
  end

  defp transferee(_h, id), do: id

  # Caught here, in the task: a raise in a task of async_stream reaches
  # the caller as a link exit ({:erpc, :noconnection} from a node down,
  # {:erpc, :timeout} from one stopped or slow), which no catch around
  # the stream stops. A voter that does not answer is not picked.
  defp ask_info(node, store_id, timeout) do
    :erpc.call(node, ExESDB.Cluster, :info, [store_id], timeout)
  catch
    _, _ -> :error
  end

  # ---- this node's replica -------------------------------------------------

  @impl true
  def read(store, source, from, count, direction, opts \\ []),
    do: NIF.read(local(store), source, from, count, direction, opts)

  @impl true
  def read_page(store, source, from, count, direction, opts \\ []),
    do: NIF.read_page(local(store), source, from, count, direction, opts)

  @impl true
  def page_records(store, page), do: NIF.page_records(local(store), page)

  @impl true
  def read_ahead, do: NIF.read_ahead()

  @impl true
  def stream_info(store, id), do: NIF.stream_info(local(store), id)

  @impl true
  def list_streams(store, after_id, count), do: NIF.list_streams(local(store), after_id, count)

  @impl true
  def snapshot_get(store, uuid), do: NIF.snapshot_get(local(store), uuid)

  @impl true
  def checkpoint_get(store, name), do: NIF.checkpoint_get(local(store), name)

  @impl true
  def checkpoint_list(store, after_name, count),
    do: NIF.checkpoint_list(local(store), after_name, count)

  @impl true
  def subscribe(store, pid, source, opts), do: NIF.subscribe(local(store), pid, source, opts)

  @impl true
  def grant(store, member, n), do: NIF.grant(local(store), member, n)

  @impl true
  def unsubscribe(store, member), do: NIF.unsubscribe(local(store), member)

  @impl true
  def stats(store), do: NIF.stats(local(store))

  @impl true
  def verify(store), do: NIF.verify(local(store))

  @impl true
  def backup(store, dest), do: NIF.backup(local(store), dest)

  @impl true
  def decode_term(bin), do: NIF.decode_term(bin)

  @impl true
  def read_piece, do: NIF.read_piece()

  @impl true
  # each runs on the leader
  def placement(_store), do: ExESDB.Subscriptions.Placement

  @impl true
  def barrier(store), do: submit(store, :barrier, [])

  # ---- this node's replica, whoever leads --------------------------------
  # Raft's view, a copy's install and the records the replica holds, for
  # the cluster's own code on this node (ExESDB.Cluster and its seeding
  # keeper, which has only the replica's ref before the store is
  # registered, and reads this replica's records whatever the leader's).

  @doc false
  def support, do: :ex_esdb_backend.cluster_support()

  @doc false
  def replica_info(ref), do: :ex_esdb_backend.cluster_info(ref)

  @doc false
  def replica_members(ref), do: :ex_esdb_backend.cluster_members(ref)

  @doc false
  def install_copy(ref, file), do: :ex_esdb_backend.cluster_install_copy(ref, file)

  @doc false
  def replica_checkpoint(ref, name), do: :ex_esdb_backend.checkpoint_get(ref, name)

  @doc false
  def replica_checkpoints(ref, after_name, count),
    do: :ex_esdb_backend.checkpoint_list(ref, after_name, count)
end
