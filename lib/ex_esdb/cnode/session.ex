defmodule ExESDB.CNode.Session do
  @moduledoc """
  The subscriptions of this node's processes on one C node
  (`priv/ex_esdb_cnode`): one session process per client node and C node
  (docs/PROTOCOL.md, "The C node's subscription sessions").

  The C node pushes committed events to this process, at most 256 a
  message, within a window of events this process returns as it takes
  them off its mailbox; it turns them into records and sends each local
  subscriber the messages the NIF backend sends (`ExESDB.Backend`'s
  `subscribe/4`): `{:events, records}`, `{:events, id, records}` (shape
  `:tagged`) or `{:events, records, since}` (shape `:ranged`),
  `{:subscription_overflow, {:transient, id}, first_missed}` and
  `{:subscription_down, {:transient, id}, :closed}`.

  Subscribers of one source share one member on the C node. Each keeps
  the member rules of c_src/proto/members.h, applied here: its credit, and
  for the plain and tagged shapes the gap check (a push whose `since` is
  past what it was sent, or the C node's notice that a push could not be
  made, ends it with `:subscription_overflow`). It monitors its
  subscribers; the C node learns of this process's end through the link
  it makes to the session's pid on the C node (ei cannot monitor), and of
  this node's through the connection closing.
  """
  use GenServer

  alias ExESDB.CNode.{Page, Terms}
  require Logger

  @window 262_144
  @call_timeout 5_000
  # a claim in a cluster: how long it is tried while no C node leads
  # (ms), and the pause between tries
  @claim_wait 5_000
  @claim_pause 50
  # ms between rounds of asking the C nodes of a cluster their terms
  # while this session holds a claim there (check_claims)
  @claim_check 100

  @type source :: :all | {:stream, String.t()} | {:type, String.t()}

  @doc """
  Start a session on the C node `cnode`. Options: `cnode` (required),
  `store` (the name of one of the C node's stores, a binary; default its
  first), `window` (events the C node may push before this process
  returns them; default #{@window}), `name`.
  """
  def start_link(opts) do
    # pushes of 256 records are large messages: kept off the heap until
    # taken, they are not copied again by every garbage collection
    gen_opts = [spawn_opt: [message_queue_data: :off_heap]]
    gen_opts = if opts[:name], do: [{:name, opts[:name]} | gen_opts], else: gen_opts
    GenServer.start_link(__MODULE__, opts, gen_opts)
  end

  def child_spec(opts),
    do: %{id: {__MODULE__, opts[:cnode]}, start: {__MODULE__, :start_link, [opts]}}

  @doc """
  Make local process `pid` a subscriber of `source`. Options: `shape`
  (`:plain`, `:tagged`, `:ranged`), `credit` (`:infinity` or a positive
  integer), `format` (`{module, decode}`, default
  `{ExESDB.EventRecord, true}`), `claim` (a persistent subscription's
  name: this session must own it on the C node's store, one owner per
  name; another client node's session owning it answers
  `{:error, :subscription_already_exists}`; the claim goes with the last
  subscriber naming it, or with the session). With a cluster of C nodes
  (option `cluster` of start_link/1) the claim is taken at the leading C
  node, through a session this process opens there, and lives while that
  C node leads in the term it was granted in: when it is lost (the C node
  stepped down or went) each subscriber naming it gets
  `{:subscription_down, {:transient, id}, :claim_lost}` and is taken
  out. The C node holding the claim is kept in the caller's process
  dictionary for its checkpoint writes (owner_at/2). Every matching event
  committed after the returned position is sent to it.
  """
  @spec subscribe(GenServer.server(), pid(), source(), keyword()) ::
          {:ok, non_neg_integer(), non_neg_integer()} | {:error, term()}
  def subscribe(session, pid, source, opts \\ []) do
    unless is_pid(pid) and node(pid) == node(),
      do: raise(ArgumentError, "a local pid, not #{inspect(pid)}")

    shape = Keyword.get(opts, :shape, :plain)
    credit = Keyword.get(opts, :credit, :infinity)
    format = Keyword.get(opts, :format, {ExESDB.EventRecord, true})
    claim = Keyword.get(opts, :claim)

    unless shape in [:plain, :tagged, :ranged] and
             (credit == :infinity or (is_integer(credit) and credit > 0)) and
             match?({m, d} when is_atom(m) and is_boolean(d), format) and valid_source?(source) and
             (claim == nil or (is_binary(claim) and claim != "")),
           do: raise(ArgumentError, "bad subscription: #{inspect({source, opts})}")

    # no timeout: a call that timed out would still be served
    case GenServer.call(session, {:subscribe, pid, source, shape, credit, format, claim}, :infinity) do
      {:ok, id, last, at} ->
        if claim, do: Process.put({__MODULE__, :claim, GenServer.whereis(session), claim}, at)
        {:ok, id, last}

      other ->
        other
    end
  catch
    :exit, _ -> {:error, :closed}
  end

  @doc """
  Where this process's last subscribe/4 through `session` (a pid) took
  the claim on `name`: the C node to send the owner's checkpoint writes
  to (`{call, Session, Ref, {as_owner, Mutation}}`, docs/PROTOCOL.md), or
  nil.
  """
  @spec owner_at(pid(), String.t()) :: node() | nil
  def owner_at(session, name), do: Process.get({__MODULE__, :claim, session, name})

  @doc "`n` more events may be sent to subscription `id`."
  def grant(session, id, n) when is_integer(n) and n > 0 do
    GenServer.call(session, {:grant, id, n})
  catch
    :exit, _ -> {:error, :subscription_not_found}
  end

  @doc "End subscription `id`: nothing reaches its process for it after this returns."
  def unsubscribe(session, id) do
    GenServer.call(session, {:unsubscribe, id})
  catch
    :exit, _ -> {:error, :subscription_not_found}
  end

  @doc "Counts: subscribers, and members held on the C node."
  def info(session), do: GenServer.call(session, :info)

  defp valid_source?(:all), do: true
  defp valid_source?({kind, name}) when kind in [:stream, :type], do: is_binary(name) and name != ""
  defp valid_source?(_), do: false

  # ---- the process ------------------------------------------------------

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    cnode = Keyword.fetch!(opts, :cnode)
    window = Keyword.get(opts, :window, @window)
    cluster = Keyword.get(opts, :cluster, [])

    to = {cnode, Keyword.get(opts, :store)}

    with {:ok, 1} <- request({cnode, nil}, {:hello, 1}),
         {:ok, cpid} <- open(to, window) do
      # its EXIT tells the C node this process ended
      Process.link(cpid)

      {:ok,
       %{
         cnode: cnode,
         # {C node, store name or nil}: where requests go
         to: to,
         cpid: cpid,
         window: window,
         # pushed events taken off the mailbox, not yet returned
         taken: 0,
         # tags replies nobody waits for (credit returns, leaves)
         cast_ref: make_ref(),
         # C node member id => %{source, subs: MapSet}
         members: %{},
         # subscription id => subscriber
         subs: %{},
         monitors: %{},
         # joins that timed out: a late {:ok, ...} is left at once
         stale_joins: MapSet.new(),
         # persistent subscription name owned => %{ids: the subscription
         # ids naming it, at: the C node that granted it, term: its raft
         # term (nil: no cluster)}
         claims: %{},
         # the other C nodes of a cluster (claims go to the leader), the
         # sessions this process opened on them for claims (C node =>
         # its session's pid, linked), the leader last found
         cluster: List.delete(cluster, cnode),
         peers: %{},
         leader: cnode,
         # the {cluster_info} asks of the last claim check (ref => C
         # node), and whether one is scheduled
         checks: %{},
         checking: false,
         # first_id: ids unique across sessions, so an id kept past
         # its session's end never names a later session's subscriber
         next_id: Keyword.get(opts, :first_id, 1)
       }}
    else
      {:error, reason} -> {:stop, reason}
      {:timeout, _} -> {:stop, :timeout}
      other -> {:stop, other}
    end
  end

  # {call, From, Ref, Request} answered {Ref, Reply}; pushes that come
  # meanwhile stay in the mailbox, behind. A store named: {at, Store,
  # Request}.
  defp request(to, req, timeout \\ @call_timeout) do
    ref = make_ref()
    send_request(to, ref, req)

    # the C node backend's wait (one {Ref, Reply} wait per binding)
    case ExESDB.Backend.CNode.await_reply(ref, timeout) do
      {:reply, reply} -> reply
      _ -> {:timeout, ref}
    end
  end

  # Pushes as packed pages (esdb_page): decoding a list of records from
  # the distribution message cost more than the rest of the fan-out
  # (docs/PERFORMANCE.md). A C node that predates them answers
  # invalid_request: then lists (esdb_events).
  # An open that timed out (a silent C node) is closed right behind it:
  # served later, it would leave a session this process never linked
  # (nothing ends it but the connection's end), taking one of the
  # connection's --max-sessions until the client node goes.
  defp open(to, window, timeout \\ @call_timeout) do
    reply =
      case request(to, {:session_open_packed, window}, timeout) do
        {:error, {:invalid_request, _}} -> request(to, {:session_open, window}, timeout)
        other -> other
      end

    with {:timeout, _} <- reply, do: send_request(to, make_ref(), {:session_close})
    reply
  end

  defp cast(state, req), do: send_request(state.to, state.cast_ref, req)

  defp send_request({cnode, nil}, ref, req), do: send({:esdb, cnode}, {:call, self(), ref, req})

  defp send_request({cnode, store}, ref, req),
    do: send({:esdb, cnode}, {:call, self(), ref, {:at, store, req}})

  @impl true
  def handle_call({:subscribe, pid, source, shape, credit, format, claim}, _from, state) do
    with true <- Process.alive?(pid) || {:error, :noproc, state},
         {:ok, state} <- claim(state, claim) do
      case member_for(state, source) do
        {:ok, cid, last, state} ->
          id = state.next_id
          mon = Process.monitor(pid)

          sub = %{
            pid: pid,
            mon: mon,
            shape: shape,
            credit: credit,
            format: format,
            member: cid,
            joined: last + 1,
            sent_to: 0,
            floor: 0,
            claim: claim
          }

          state =
            %{state | next_id: id + 1, subs: Map.put(state.subs, id, sub)}
            |> put_in([:monitors, mon], id)
            |> update_in([:members, cid, :subs], &MapSet.put(&1, id))
            |> claimed(claim, id)

          at = if claim, do: state.claims[claim].at
          {:reply, {:ok, id, last, at}, state}

        {:error, _} = error ->
          {:reply, error, unclaim(state, claim)}

        {:error, reason, state} ->
          {:reply, {:error, reason}, unclaim(state, claim)}
      end
    else
      {:error, reason, state} -> {:reply, {:error, reason}, state}
    end
  end

  def handle_call({:grant, id, n}, _from, state) do
    case state.subs do
      %{^id => %{credit: :infinity}} ->
        {:reply, :ok, state}

      %{^id => sub} ->
        {:reply, :ok, put_in(state.subs[id], %{sub | credit: sub.credit + n})}

      _ ->
        {:reply, {:error, :subscription_not_found}, state}
    end
  end

  def handle_call({:unsubscribe, id}, _from, state) do
    case state.subs do
      %{^id => sub} ->
        Process.demonitor(sub.mon, [:flush])
        {:reply, :ok, remove(state, id)}

      _ ->
        {:reply, {:error, :subscription_not_found}, state}
    end
  end

  def handle_call(:info, _from, state),
    do: {:reply, %{subscribers: map_size(state.subs), members: map_size(state.members)}, state}

  # Join source for one more subscriber: the C node answers this
  # session's member of it (a new one, or the one it holds, with one more
  # holder) and the position after which the subscriber gets events.
  # Pushes up to there may still be in the mailbox: they are skipped for
  # it (deliver_one/9).
  defp member_for(state, source) do
    case request(state.to, {:session_join, source}) do
      {:ok, cid, last} ->
        state =
          if Map.has_key?(state.members, cid),
            do: state,
            else: put_in(state.members[cid], %{source: source, subs: MapSet.new()})

        {:ok, cid, last, state}

      {:error, reason} ->
        {:error, reason}

      {:timeout, ref} ->
        {:error, :timeout, %{state | stale_joins: MapSet.put(state.stale_joins, ref)}}

      other ->
        {:error, other}
    end
  end

  # A persistent subscription's name owned, on the C node's store (with
  # a cluster: on the leading C node's). {:ok, state} with the claim in
  # state.claims (no subscription id yet), or {:error, reason, state}.
  defp claim(state, nil), do: {:ok, state}
  defp claim(%{claims: claims} = state, name) when is_map_key(claims, name), do: {:ok, state}

  defp claim(%{cluster: []} = state, name) do
    case request(state.to, {:session_claim, name}) do
      :ok ->
        {:ok, put_claim(state, name, state.cnode, nil)}

      {:error, reason} ->
        {:error, reason, state}

      # it may have been taken: given back
      {:timeout, _} ->
        cast(state, {:session_release, name})
        {:error, :timeout, state}
    end
  end

  defp claim(state, name),
    do: claim_at(state, name, state.leader, now() + @claim_wait, {:no_quorum, false})

  # Tries at `target`, following {:not_leader, leader} (at once the first
  # time, then after @claim_pause: two C nodes may name each other a
  # moment); while no leader is known (an election), or `target` is out
  # of reach or silent, the next C node after @claim_pause. Within
  # @claim_wait in all (this process serves no push meanwhile): then
  # {:error, :no_quorum}, or :timeout after a C node that did not answer.
  defp claim_at(state, name, target, deadline, {why, followed}) do
    left = deadline - now()

    with true <- left > 0 || {:error, why, state},
         {:ok, state} <- peer(state, target, left) do
      case request(at(state, target), {:session_claim, name}, left) do
        {:ok, term} ->
          {:ok, put_claim(%{state | leader: target}, name, target, term)}

        {:error, {:not_leader, leader}} ->
          if leader != nil and leader != target and member?(state, leader) do
            if followed, do: Process.sleep(@claim_pause)
            claim_at(state, name, leader, deadline, {:no_quorum, true})
          else
            Process.sleep(@claim_pause)
            claim_at(state, name, next(state, target), deadline, {:no_quorum, followed})
          end

        {:error, reason} ->
          {:error, reason, %{state | leader: target}}

        # silent (stopped, cut off): given back there, the next tried
        {:timeout, _} ->
          cast_at(state, target, {:session_release, name})
          next = next(state, target)
          claim_at(%{state | leader: next}, name, next, deadline, {:timeout, followed})
      end
    else
      {:error, _, _} = out_of_time ->
        out_of_time

      # that C node out of reach: the next
      {:error, _} ->
        Process.sleep(@claim_pause)
        claim_at(state, name, next(state, target), deadline, {why, followed})
    end
  end

  defp now, do: System.monotonic_time(:millisecond)

  defp member?(state, node), do: node == state.cnode or node in state.cluster

  defp next(state, target) do
    nodes = Enum.sort([state.cnode | state.cluster])
    i = Enum.find_index(nodes, &(&1 == target)) || 0
    Enum.at(nodes, rem(i + 1, length(nodes)))
  end

  # Requests to C node `target` of the store's cluster.
  defp at(%{cnode: cnode} = state, cnode), do: state.to
  defp at(state, target), do: {target, elem(state.to, 1)}

  defp cast_at(state, target, req), do: send_request(at(state, target), state.cast_ref, req)

  # A session of this process on C node `target` (the store's own C
  # node's is this process's session): opened and linked once.
  defp peer(%{cnode: cnode} = state, cnode, _timeout), do: {:ok, state}

  defp peer(%{peers: peers} = state, target, _timeout) when is_map_key(peers, target),
    do: {:ok, state}

  defp peer(state, target, timeout) do
    if Node.connect(target) == true do
      case open(at(state, target), 1, timeout) do
        {:ok, cpid} ->
          Process.link(cpid)
          {:ok, put_in(state.peers[target], cpid)}

        # one an earlier open opened after it timed out here: closed, and
        # opened again next time
        {:error, {:invalid_request, :session_exists}} ->
          cast_at(state, target, {:session_close})
          {:error, :session_exists}

        {:error, _} = error ->
          error

        other ->
          {:error, other}
      end
    else
      {:error, {:unreachable, target}}
    end
  end

  defp put_claim(state, name, at, term) do
    state = put_in(state.claims[name], %{ids: MapSet.new(), at: at, term: term})
    if term != nil and not state.checking, do: send(self(), :check_claims)
    %{state | checking: state.checking or term != nil}
  end

  # A claim lives in the raft term it was granted in. Its C node drops it
  # when it stops leading, or goes with it; a C node that falls silent
  # (stopped, cut off) does neither, so while claims are held every C node
  # of the cluster is asked its term every @claim_check ms: one reporting
  # a later term than a claim's means that claim is dead (its C node can
  # commit nothing more in that term, and the owner's writes are fenced
  # to it), and it is lost here.
  defp check_claims(state) do
    if Enum.any?(state.claims, fn {_, c} -> c.term != nil end) do
      checks =
        for node <- [state.cnode | state.cluster], into: %{} do
          ref = make_ref()
          {to, store} = at(state, node)
          req = if store, do: {:at, store, {:cluster_info}}, else: {:cluster_info}
          Process.send({:esdb, to}, {:call, self(), ref, req}, [:noconnect])
          {ref, node}
        end

      Process.send_after(self(), :check_claims, @claim_check)
      %{state | checks: checks}
    else
      %{state | checks: %{}, checking: false}
    end
  end

  defp claimed(state, nil, _id), do: state
  defp claimed(state, name, id), do: update_in(state.claims[name].ids, &MapSet.put(&1, id))

  # A name no subscriber holds (any more) is given back.
  defp unclaim(state, nil), do: state

  defp unclaim(state, name) do
    case state.claims do
      %{^name => c} ->
        if MapSet.size(c.ids) > 0 do
          state
        else
          cast_at(state, c.at, {:session_release, name})
          %{state | claims: Map.delete(state.claims, name)}
        end

      _ ->
        state
    end
  end

  defp unclaim(state, name, id) when is_map_key(state.claims, name),
    do: unclaim(update_in(state.claims[name].ids, &MapSet.delete(&1, id)), name)

  defp unclaim(state, _name, _id), do: state

  # Claims lost (their C node stepped down or went): each subscriber
  # naming one is told and taken out; it subscribes again (a persistent
  # subscription takes the name at the new leader, or stops when another
  # owner has it).
  defp lose_claims(state, lost) do
    Enum.reduce(lost, state, fn name, st ->
      {c, claims} = Map.pop(st.claims, name)

      Enum.reduce(c.ids, %{st | claims: claims}, fn id, st ->
        case st.subs do
          %{^id => sub} ->
            send(sub.pid, {:subscription_down, {:transient, id}, :claim_lost})
            Process.demonitor(sub.mon, [:flush])
            remove(st, id)

          _ ->
            st
        end
      end)
    end)
  end

  # A subscriber gone: its hold on the member goes (the C node leaves
  # the member with its last holder); no reply is awaited, pushes still
  # on their way are dropped (their window returned).
  defp remove(state, id) do
    {sub, subs} = Map.pop(state.subs, id)
    state = %{state | subs: subs, monitors: Map.delete(state.monitors, sub.mon)}
    state = if sub.claim, do: unclaim(state, sub.claim, id), else: state
    cid = sub.member
    cast(state, {:session_leave, cid})

    case state.members do
      %{^cid => member} ->
        rest = MapSet.delete(member.subs, id)

        if MapSet.size(rest) == 0,
          do: %{state | members: Map.delete(state.members, cid)},
          else: put_in(state.members[cid].subs, rest)

      _ ->
        state
    end
  end

  @impl true
  def handle_info({:esdb_events, cid, since, pushed}, state) do
    state = took(state, length(pushed))

    case state.members do
      %{^cid => member} ->
        if well_formed?(pushed),
          do: {:noreply, deliver(state, member, since, pushed, {:list, pushed}, %{})},
          else: {:noreply, malformed(state, member)}

      _ ->
        {:noreply, state}
    end
  end

  def handle_info({:esdb_page, cid, since, count, page}, state)
      when is_binary(page) and is_integer(count) and count >= 0 do
    state = took(state, count)

    case state.members do
      %{^cid => member} -> {:noreply, deliver_page(state, member, since, page)}
      _ -> {:noreply, state}
    end
  end

  def handle_info({:esdb_missed, cid, first}, state) do
    case state.members do
      %{^cid => member} ->
        # plain and tagged subscribers it concerns end (not one that
        # joined after those events); a ranged one learns it from the
        # next push's since (the C node raised the member's floor)
        Enum.reduce(member.subs, state, fn id, st ->
          sub = st.subs[id]

          if sub.shape == :ranged or first < sub.joined,
            do: st,
            else: overflow(st, id, sub, first)
        end)
        |> then(&{:noreply, &1})

      _ ->
        {:noreply, state}
    end
  end

  def handle_info({:DOWN, mon, :process, _, _}, state) do
    case state.monitors do
      %{^mon => id} -> {:noreply, remove(state, id)}
      _ -> {:noreply, state}
    end
  end

  # the C node went (noconnection) or ended the session
  def handle_info({:EXIT, cpid, reason}, %{cpid: cpid} = state),
    do: {:stop, {:shutdown, {:cnode_down, reason}}, state}

  # A claim dropped by the C node that granted it (it stopped leading):
  # lost, unless taken again since (in another term).
  def handle_info({:esdb_claim_lost, name, term}, state) do
    case state.claims do
      %{^name => %{term: ^term}} -> {:noreply, lose_claims(state, [name])}
      _ -> {:noreply, state}
    end
  end

  # Another C node of the cluster went, or ended this process's session
  # there: the claims it granted are lost.
  def handle_info({:EXIT, from, _reason} = msg, state) when is_pid(from) do
    case Enum.find(state.peers, fn {_, cpid} -> cpid == from end) do
      {target, _} ->
        lost = for {name, %{at: ^target}} <- state.claims, do: name
        leader = if state.leader == target, do: next(state, target), else: state.leader
        state = %{state | peers: Map.delete(state.peers, target), leader: leader}
        {:noreply, lose_claims(state, lost)}

      nil ->
        exit_other(msg, state)
    end
  end

  def handle_info(:check_claims, state), do: {:noreply, check_claims(state)}

  # a C node's term, asked by check_claims: claims of earlier terms are lost
  def handle_info({ref, reply}, %{checks: checks} = state) when is_map_key(checks, ref) do
    state = %{state | checks: Map.delete(checks, ref)}

    case reply do
      {:ok, %{term: t} = info} when is_integer(t) ->
        lost = for {name, %{term: ct}} <- state.claims, ct != nil and ct < t, do: name
        # (claimed again where the later term's leader is, when named)
        l = Map.get(info, :leader_node)
        state = if lost != [] and member?(state, l), do: %{state | leader: l}, else: state
        {:noreply, lose_claims(state, lost)}

      _ ->
        {:noreply, state}
    end
  end

  # a join answered after it timed out: nobody holds its member; any
  # other reply is an owner's checkpoint write's (From is this session),
  # handed on to its Ref, the writer's alias (gone: dropped)
  def handle_info({ref, reply} = msg, state) when is_reference(ref) and ref != state.cast_ref do
    if MapSet.member?(state.stale_joins, ref) do
      with {:ok, cid, _} <- reply, do: cast(state, {:session_leave, cid})
      {:noreply, %{state | stale_joins: MapSet.delete(state.stale_joins, ref)}}
    else
      send(ref, msg)
      {:noreply, state}
    end
  end

  # replies to casts, stray messages
  def handle_info(_other, state), do: {:noreply, state}

  defp exit_other({:EXIT, _from, :normal}, state), do: {:noreply, state}
  defp exit_other({:EXIT, _from, reason}, state), do: {:stop, reason, state}

  @impl true
  def terminate(_reason, state) do
    for {id, sub} <- state.subs,
        do: send(sub.pid, {:subscription_down, {:transient, id}, :closed})

    :ok
  end

  # Return taken events to the window a quarter at a time.
  defp took(state, n) do
    taken = state.taken + n

    if taken * 4 >= state.window do
      cast(state, {:session_credit, taken})
      %{state | taken: 0}
    else
      %{state | taken: taken}
    end
  end

  defp well_formed?([_ | _] = pushed),
    do: Enum.all?(pushed, &match?(%{position: p, data: _, metadata: _} when is_integer(p), &1))

  defp well_formed?(_pushed), do: false

  # A push that is no list of records (c_src/cnode sent something else):
  # which events it held is unknown, so each subscriber of the member
  # ends as at a gap where it stands: plain ones overflow, ranged ones
  # (persistent subscriptions) are told the membership is down and read
  # what they missed from the store.
  defp malformed(state, member) do
    Logger.error("ExESDB C node session: a malformed push, {:corrupt, :record}")

    Enum.reduce(member.subs, state, fn id, st ->
      sub = st.subs[id]

      if sub.shape == :ranged do
        send(sub.pid, {:subscription_down, {:transient, id}, {:corrupt, :record}})
        Process.demonitor(sub.mon, [:flush])
        remove(st, id)
      else
        overflow(st, id, sub, max(sub.joined, sub.sent_to + 1))
      end
    end)
  end

  # A page's records in one of its subscribers' formats give the
  # positions (a page that does not parse in any is malformed).
  defp deliver_page(state, member, since, page) do
    case Enum.take(member.subs, 1) do
      [id] ->
        src = {:page, page}

        probe =
          case records(%{}, state.subs[id].format, src) do
            {:ok, records, built} -> {:ok, records, built}
            # not in that format (a term that may not be decoded)
            {:error, built} -> with {:ok, r} <- Page.records(page, false), do: {:ok, r, built}
          end

        case probe do
          {:ok, [_ | _] = records, built} -> deliver(state, member, since, records, src, built)
          _ -> malformed(state, member)
        end

      [] ->
        state
    end
  end

  # probe: the pushed events as records of some format (their positions);
  # src: {:list, pushed records} or {:page, page}, what each subscriber's
  # records are made of (built: those made, by format).
  defp deliver(state, member, since, probe, src, built) do
    first = hd(probe).position
    last = List.last(probe).position

    {state, _built} =
      Enum.reduce(member.subs, {state, built}, fn id, {st, built} ->
        sub = st.subs[id]

        # what it joined after is not its own
        if last < sub.joined,
          do: {st, built},
          else: deliver_one(st, id, sub, since, first, last, probe, src, built)
      end)

    state
  end

  # members.c's esdb_member_deliver, for one subscriber.
  defp deliver_one(state, id, sub, since, first, last, probe, src, built) do
    {n, first} =
      if first < sub.joined do
        mine = Enum.filter(probe, &(&1.position >= sub.joined))
        {length(mine), hd(mine).position}
      else
        {length(probe), first}
      end

    since = max(since, sub.floor)
    next = max(sub.joined, if(sub.sent_to > 0, do: sub.sent_to + 1, else: 0))

    hole =
      cond do
        sub.shape != :ranged and since > next -> next
        sub.credit != :infinity and sub.credit < n -> first
        true -> nil
      end

    if hole do
      {overflow(state, id, sub, hole), built}
    else
      case records(built, sub.format, src) do
        {:ok, records, built} ->
          records =
            if first < sub.joined,
              do: Enum.drop_while(records, &(&1.position < sub.joined)),
              else: records

          send(sub.pid, message(sub.shape, id, records, since))
          credit = if sub.credit == :infinity, do: :infinity, else: sub.credit - n
          {put_in(state.subs[id], %{sub | sent_to: last, credit: credit}), built}

        {:error, built} ->
          # records could not be built (a stored term that does not
          # decode): members.c's esdb_member_undelivered
          if sub.shape == :ranged,
            do: {put_in(state.subs[id].floor, last + 1), built},
            else: {overflow(state, id, sub, first), built}
      end
    end
  end

  defp records(built, format, src) do
    case built do
      %{^format => :error} ->
        {:error, built}

      %{^format => records} ->
        {:ok, records, built}

      _ ->
        case build(src, format) do
          {:ok, records} -> {:ok, records, Map.put(built, format, records)}
          {:error, _} -> {:error, Map.put(built, format, :error)}
        end
    end
  end

  # The C node pushes the NIF's records but for the payloads, which come
  # as read (bytes, {:term, b}, {:legacy, b}): made here what the NIF's
  # records of this format hold (c_src/nif/records.c's payload()), term
  # payloads decoded with the store's checks. A term that may not be
  # decoded fails the whole push, as it fails the NIF's delivery.
  defp build({:list, records}, {module, decode}), do: finish(records, module, decode, [])

  # a page is cut into %ExESDB.EventRecord{}s, payloads decoded as asked
  defp build({:page, page}, {module, decode}) do
    with {:ok, records} <- Page.records(page, decode) do
      if module == ExESDB.EventRecord,
        do: {:ok, records},
        else: {:ok, Enum.map(records, &%{&1 | __struct__: module})}
    end
  end

  defp finish([], _module, _decode, acc), do: {:ok, :lists.reverse(acc)}

  defp finish([%{data: d, metadata: m} = r | rest], module, decode, acc) do
    with {:ok, d2} <- payload(d, decode),
         {:ok, m2} <- payload(m, decode) do
      r = if d2 === d and m2 === m, do: r, else: %{r | data: d2, metadata: m2}
      r = if module == ExESDB.EventRecord, do: r, else: %{r | __struct__: module}
      finish(rest, module, decode, [r | acc])
    end
  end

  defp payload(bytes, false) when is_binary(bytes), do: {:ok, bytes}
  defp payload({_encoding, bytes}, false), do: {:ok, bytes}
  defp payload("", true), do: {:ok, nil}
  defp payload(bytes, true) when is_binary(bytes), do: {:ok, bytes}
  defp payload({:term, bin}, true), do: Terms.decode(bin)
  defp payload({:legacy, ""}, true), do: {:ok, nil}

  defp payload({:legacy, bin}, true) do
    case Terms.decode(bin) do
      # written before encodings were recorded, and not a term
      {:error, {:undecodable, :malformed}} -> {:ok, bin}
      decoded -> decoded
    end
  end

  defp payload(_other, _decode), do: {:error, {:corrupt, :record}}

  defp message(:plain, _id, records, _since), do: {:events, records}
  defp message(:tagged, id, records, _since), do: {:events, id, records}
  defp message(:ranged, _id, records, since), do: {:events, records, since}

  defp overflow(state, id, sub, position) do
    send(sub.pid, {:subscription_overflow, {:transient, id}, position})
    Process.demonitor(sub.mon, [:flush])
    remove(state, id)
  end
end
