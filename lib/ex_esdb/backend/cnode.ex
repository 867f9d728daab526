defmodule ExESDB.Backend.CNode do
  @moduledoc """
  `ExESDB.Backend` on a C node (`priv/ex_esdb_cnode`): the store lives in
  another OS process, reached over Erlang distribution; this VM loads no
  native code for it. Requests are docs/PROTOCOL.md's `{call, From, Ref,
  Request}`, answered with the NIF's replies and error shapes.

  What a separate process adds to the error table:

    * `{:error, {:unreachable, cnode}}`: the C node is not connected (or
      a connection came up without its hello); a mutation was not sent.
    * `{:error, :outcome_unknown}`: a mutation was sent and no reply came,
      because the C node went down, or `store.timeout` passed and the
      C node's writer had already taken it: it may be applied.
    * `{:error, :timeout}`: a read or lookup got no reply in
      `store.timeout`, or a mutation past `store.timeout` was withdrawn
      from the C node's writer queue (`{cancel, Ref}`, as the NIF
      backend's cancel): it is never applied.

  A reply that comes after the caller gave up reaches no mailbox (see
  `ExESDB.CNode.Connection`). Subscriptions go through one
  `ExESDB.CNode.Session` per store on this node; when the C node goes
  down its subscribers get `{:subscription_down, {:transient, member},
  :closed}`, and `subscribe/4` answers `{:error, {:unreachable, cnode}}`
  until it is back.

  ## A cluster of C nodes

  With `cnode_cluster` (the C nodes of a raft cluster replicating the
  store, each started with `--raft-*`, README "A cluster of C nodes"),
  this node keeps a connection to each. Reads and subscriptions go to the
  store's own C node (`cnode`), which may be a follower; a write another
  C node took is answered once the store's own C node applied as much as
  that one had when it answered (within `timeout`; best effort, as the
  cluster gateway's), so a caller reads its own writes. Writes go to it, and follow a follower's `{:error, {:not_leader,
  node}}` to the leader it names; a try that found no leader, or whose C
  node went away (its outcome unknown), is tried again (the store's C
  node first, then the others in turn) with a pause of 10 ms doubling to
  200 ms, until one answers or the caller's `timeout` runs out. Every
  try after the first is an append marked as a retry (the same event
  ids: the store answers the first result if the events are already
  there). What such a loop answers is decided as the cluster gateway's
  (`ExESDB.Backend.Cluster.outcome/3`): an answer saying "not written"
  after a try that may have been applied is `{:error, :outcome_unknown}`;
  out of time with no leader known it is `{:error, :no_quorum}`. Every
  try is fenced (docs/PROTOCOL.md `in_term`) with the raft term its C
  node was last seen in (asked with `{cluster_info}` when not known, and
  again after it refused or was not reached) and the caller's deadline
  less the reply margin the cluster gateway keeps (`ExESDB.Backend.Deadline`):
  a try held in a connection that arrives after it was given up and sent
  again is refused there, never applied twice. A try at a C node that
  falls silent (stopped, cut off) is given up as soon as another C node
  reports a later term with another leader (asked every 50 ms by one
  `ExESDB.CNode.Watcher` per store on this node, however many writes
  wait), and sent there marked: the old
  try commits, if at all, before the new leader's entries, where the
  marked one finds it (docs/CLUSTER.md, "A cluster of C nodes").

  A C node whose replica failed (fail-stop) refuses a write with
  `{:error, {:store_failed, cause}}` before proposing it: it goes on to
  another C node as one that found no leader. It refuses reads of its
  store (stale: it applies nothing more) the same way: those go to the
  leader, and writes taken elsewhere are not waited for there.
  """
  @behaviour ExESDB.Backend

  alias ExESDB.Backend.{CallerRelay, Cluster, Deadline}
  alias ExESDB.CNode.{Connection, Page, Session, Terms, Watcher}
  alias ExESDB.EventCodec

  defmodule Handle do
    @moduledoc false
    # The C node's name and the store whose relay carries its replies;
    # members: every C node of the store's cluster and its relay's name
    # (the store's own C node's among them; empty: no cluster); behind:
    # with a cluster, an atomics whose one slot is the highest raft
    # index a write was acknowledged at that the store's own C node was
    # not seen to apply (0: none; all ones: not known, reads pass a
    # barrier); terms: with a cluster, an atomics with
    # a slot per member (slots: node => slot), the raft term a write to
    # it was last fenced with (0: ask it first).
    defstruct [:cnode, :store_id, :relay, :behind, :terms, members: %{}, slots: %{}]
  end

  @doc false
  # The processes a store on the C node backend runs before its
  # ExESDB.Store: the launcher (unless the C node was started elsewhere)
  # and the connection.
  @spec children(ExESDB.Options.t()) :: [Supervisor.child_spec()]
  def children(%{backend: :cnode} = options) do
    cnode = node_name(options)
    cookie = cookie(options.cnode_cookie)

    launcher =
      if options.cnode == nil,
        do: [
          {ExESDB.CNode.Launcher,
           %{
             store_id: options.store_id,
             cnode: cnode,
             path: ExESDB.Options.store_path(options),
             listen: options.cnode_listen,
             durability: options.durability,
             cookie: options.cnode_cookie,
             raft: raft_args(options, cnode)
           }}
        ],
        else: []

    cluster = Map.get(options, :cnode_cluster, [])

    members =
      for m <- cluster, m != cnode do
        {Connection, %{store_id: options.store_id, cnode: m, cookie: cookie, member: true}}
      end

    launcher ++
      [
        {Connection, %{store_id: options.store_id, cnode: cnode, cookie: cookie, cluster: cluster}}
        | members
      ]
  end

  def children(_options), do: []

  @doc false
  # Started after every other child of the store's system (it is only a
  # help: under :rest_for_one, a crash of it restarts nothing else): one
  # watcher of the cluster's terms and leaders for every write of this
  # node waiting on one of its C nodes (ExESDB.CNode.Watcher). Writes
  # without it ask the C nodes themselves.
  @spec late_children(ExESDB.Options.t()) :: [Supervisor.child_spec()]
  def late_children(%{backend: :cnode} = options) do
    case Map.get(options, :cnode_cluster, []) do
      [] ->
        []

      cluster ->
        relays = relays(options.store_id, node_name(options), cluster)
        [{Watcher, %{store_id: options.store_id, members: relays}}]
    end
  end

  def late_children(_options), do: []

  @doc false
  # The --raft-* arguments of a launched C node whose name is among
  # `cnode_cluster`: a replica of the store, numbered and addressed as
  # cluster mode numbers its seeds (ExESDB.Cluster.config/2: the sorted
  # list, `raft_addresses` or the name's host and `raft_port`, `raft_bind`,
  # `election_timeout`, `heartbeat`, `snapshot_threshold`,
  # `snapshot_trailing_bytes`; `cnode_wiped` as --raft-wiped). [] without
  # a cluster.
  @spec raft_args(ExESDB.Options.t(), node()) :: [String.t()]
  def raft_args(options, cnode) do
    cluster = Map.get(options, :cnode_cluster, [])

    if cnode in cluster do
      c = ExESDB.Cluster.config(%{options | seed_nodes: cluster}, cnode)

      [
        ["--raft-id", "#{c.id}"],
        ["--raft-address", c.nif.address],
        ["--raft-bind", c.nif.bind_address],
        ["--raft-election-timeout-ms", "#{c.nif.election_timeout_ms}"],
        ["--raft-heartbeat-ms", "#{c.nif.heartbeat_ms}"],
        ["--raft-snapshot-threshold", "#{c.nif.snapshot_threshold}"],
        ["--raft-trailing-bytes", "#{c.nif.trailing_bytes}"],
        ["--raft-wiped", "#{Map.get(options, :cnode_wiped, :refuse)}"]
        | for({i, addr} <- c.nif.members, do: ["--raft-member", "#{i},#{addr},#{c.nodes[i]}"])
      ]
      |> List.flatten()
    else
      []
    end
  end

  @doc false
  # The C node's name: `cnode` (started elsewhere), `cnode_name`, or
  # <store_id>_cnode on this node's host (other characters than letters,
  # digits, _ and - made _).
  @spec node_name(ExESDB.Options.t()) :: node()
  def node_name(%{cnode: cnode}) when cnode != nil, do: cnode
  def node_name(%{cnode_name: name}) when name != nil, do: name

  def node_name(%{store_id: store}) do
    if not Node.alive?(),
      do:
        raise(
          ArgumentError,
          "ExESDB backend :cnode needs this node distributed (--sname or --name)"
        )

    [_, host] = node() |> Atom.to_string() |> String.split("@")
    # a node's name part takes letters, digits, _ and - (store ids may
    # hold dots)
    name = store |> Atom.to_string() |> String.replace(~r/[^A-Za-z0-9_-]/, "_")
    :"#{name}_cnode@#{host}"
  end

  # The cookie to reach the C node with: this node's, or the file's.
  defp cookie(:node), do: nil
  defp cookie(path), do: path |> File.read!() |> String.trim() |> String.to_atom()

  @doc """
  Reach the store's C node: `path` is the store it serves (opened there);
  `opts.cnode` names it: `%{node: name, store_id: id, wait: ms}`. Waits up
  to `wait` ms for ExESDB.CNode.Connection to have connected.
  """
  @impl true
  def open(_path, %{cnode: %{node: cnode, store_id: store} = c}) do
    relay = Connection.relay_name(store)

    members =
      case Map.get(c, :cluster, []) do
        [] -> %{}
        nodes -> relays(store, cnode, nodes)
      end

    behind = if members != %{}, do: :atomics.new(1, signed: false)
    slots = members |> Map.keys() |> Enum.sort() |> Enum.with_index(1) |> Map.new()
    terms = if members != %{}, do: :atomics.new(map_size(members), signed: false)

    h = %Handle{
      cnode: cnode,
      store_id: store,
      relay: relay,
      members: members,
      behind: behind,
      terms: terms,
      slots: slots
    }

    case Connection.await_relay(store, Map.get(c, :wait, 30_000)) do
      nil -> {:error, {:unreachable, cnode}}
      _relay -> {:ok, h}
    end
  end

  def open(_path, _opts), do: {:error, {:invalid_option, :cnode}}

  # Each C node of a store's cluster => its relay's registered name (the
  # store's own C node's relay is the store's).
  defp relays(store, cnode, nodes),
    do:
      Map.new(nodes, &{&1, Connection.relay_name(store, &1)})
      |> Map.put(cnode, Connection.relay_name(store))

  # The C node is stopped by its launcher (or whoever started it).
  @impl true
  def close(_handle), do: :ok

  @impl true
  def limits(h), do: call(h, {:limits}, :read, 30_000)

  @impl true
  def submit(store, command, opts \\ [])

  def submit(%{handle: %Handle{members: m}} = store, command, opts) do
    cond do
      # a persistent subscription's own checkpoint write: through its
      # claim (owner_write/2), on one C node as in a cluster (never
      # routed to another leader); in the caller's relay, in order
      opts[:here] == true and elem(command, 0) in [:checkpoint_put, :checkpoint_delete] ->
        write = owner_write(store, command)

        if opts[:async],
          do: CallerRelay.async(__MODULE__, store.store_id, Keyword.fetch!(opts, :ref), write),
          else: CallerRelay.sync(__MODULE__, store.store_id, fn -> translate(command, write.()) end)

      map_size(m) > 0 ->
        cluster_submit(store, command, opts)

      true ->
        single_submit(store, command, opts)
    end
  end

  defp cluster_submit(store, command, opts) do
    if opts[:async] do
      # one relay process per caller and store keeps its async commands
      # in order while each follows the leader (the reply untranslated,
      # as the NIF's)
      CallerRelay.async(__MODULE__, store.store_id, Keyword.fetch!(opts, :ref), fn ->
        route(store, command)
      end)
    else
      # the caller's async commands still on their way land first
      CallerRelay.sync(__MODULE__, store.store_id, fn ->
        translate(command, route(store, command))
      end)
    end
  end

  defp single_submit(%{handle: h} = store, command, opts) do
    if opts[:async] do
      # From is the caller and Ref its own: the reply comes as {ref,
      # reply}, as the NIF backend's does, in the order of the sends
      # (untranslated, as the NIF's); none comes if the C node goes down
      ref = Keyword.fetch!(opts, :ref)

      with relay when relay != nil <- Process.whereis(h.relay),
           :ok <- Process.send({:esdb, h.cnode}, {:call, self(), ref, command}, [:noconnect]) do
        :ok
      else
        _ -> {:error, {:unreachable, h.cnode}}
      end
    else
      translate(command, call(h, command, :write, store.timeout))
    end
  end

  # A persistent subscription's checkpoint write (a function for the
  # caller's relay): sent as {as_owner, Command} to the C node that
  # granted this process's claim on the name (its session's,
  # ExESDB.CNode.Session.owner_at/2; the store's own C node without a
  # cluster), with the session as From (the C node checks the session
  # owns the name there, in a cluster in the claim's raft term, and
  # fences the write to that term); the session hands the reply on to
  # this call's alias. A claim lost (the session ended, the C node no
  # longer leads, or went) answers {:error, :claim_lost} or an error of
  # reach, and nothing is written: an owner whose name another took
  # meanwhile never puts its older checkpoint over the newer one; the
  # subscription takes the name again first (told the claim was lost,
  # or its membership down).
  defp owner_write(store, command) do
    h = store.handle
    name = elem(command, 1)

    at =
      with {:ok, session} <- session(store),
           cnode when cnode != nil <- Session.owner_at(session, name),
           do: {session, cnode},
           else: (_ -> nil)

    fn ->
      case at do
        nil ->
          {:error, :claim_lost}

        {session, cnode} ->
          deadline = deadline(store.timeout)

          with {:ok, ref} <- send_call(cnode, session, {:as_owner, command}, :reply_demonitor) do
            case await_reply(ref, store.timeout) do
              {:reply, reply} ->
                # read-your-writes, as route/3's: the store's own C node
                # (where reads go) applies it first, or reads wait for it
                reply = owner_replied(h, reply)
                if cnode != h.cnode and taken?(command, reply), do: caught_up(h, cnode, deadline)
                reply

              # the session went with the write sent
              :down ->
                {:error, :outcome_unknown}

              # sent and not answered in time: it may be applied
              :timeout ->
                {:error, :outcome_unknown}
            end
          end
      end
    end
  end

  # the C node knows no session of From (it ended there): its claim is
  # gone, one shape for that
  defp owner_replied(_h, {:error, :no_session}), do: {:error, :claim_lost}
  defp owner_replied(h, reply), do: replied(h, reply)

  @impl true
  def read(store, source, from, count, direction, opts \\ []) do
    with {:ok, page, next} <- read_page(store, source, from, count, direction, opts),
         {:ok, records} <- page_records(store, page),
         do: {:ok, records, next}
  end

  @impl true
  # The page: records (read_parts made them as its parts came), or a
  # packed page or tuples from an older C node, whose records
  # page_records makes.
  def read_page(store, source, from, count, direction, opts \\ []) do
    {_module, decode} = EventCodec.format(store, Keyword.get(opts, :decode, true))

    args = [source, from, count, direction, {ExESDB.EventRecord, decode}]
    parts = List.to_tuple([:read_parts | args])

    at = fn cnode, relay, timeout ->
      call_parts(store.handle, cnode, relay, parts, decode, timeout)
    end

    case fresh(store, fn -> read_at(store, at) end) do
      # a C node older than read_parts
      {:error, {:invalid_request, :unknown_operation}} -> read_packed(store, args, decode)
      # read_parts cut each part into records as it came
      {:ok, records, next} -> {:ok, {:records, records}, next}
      other -> other
    end
  end

  defp read_packed(store, args, decode) do
    packed = List.to_tuple([:read_packed | args])

    # (fresh already: the read before it asked read_parts)
    case read_at(store, packed) do
      {:ok, page, next} when is_binary(page) ->
        {:ok, {:packed, page, decode}, next}

      # a C node older than read_packed: its records as tuples
      {:error, {:invalid_request, :unknown_operation}} ->
        with {:ok, tuples, next} <-
               call(store.handle, List.to_tuple([:read_records | args]), :read, store.timeout) do
          {:ok, {:tuples, tuples, decode}, next}
        end

      {:ok, _page, _next} ->
        {:error, {:corrupt, :record}}

      other ->
        other
    end
  end

  # read_parts (docs/PROTOCOL.md): the page's parts come ahead of its
  # reply and each is cut into records as it arrives, while the C node
  # reads on (what one page in one piece spends waiting on both sides);
  # a part that does not parse fails the read, once the reply is in.
  # The alias goes with the monitor: parts or a reply after a timeout
  # are dropped, and those already here are taken out of the mailbox
  # (after a reply none can come: its parts come before it).
  defp call_parts(h, cnode, relay_name, request, decode, timeout) do
    h = %{h | cnode: cnode}

    case Process.whereis(relay_name) do
      nil ->
        {:error, {:unreachable, cnode}}

      relay ->
        with {:ok, ref} <- send_call(cnode, relay, request, :demonitor) do
          deadline = if timeout == :infinity, do: :infinity, else: now() + timeout
          {replied, reply} = await_parts(h, ref, decode, deadline, [])
          Process.demonitor(ref, [:flush])
          if not replied, do: drop_parts(ref)
          reply
        end
    end
  end

  # (each part and the reply come as {Ref, Reply}: await_reply/3's)
  defp await_parts(h, ref, decode, deadline, acc) do
    case await_reply(ref, remaining(deadline), :keep) do
      {:reply, {:esdb_part, part}} when is_binary(part) and is_list(acc) ->
        acc =
          case Page.records(part, decode) do
            {:ok, records} -> [records | acc]
            error -> error
          end

        await_parts(h, ref, decode, deadline, acc)

      {:reply, {:esdb_part, part}} when is_binary(part) ->
        await_parts(h, ref, decode, deadline, acc)

      # a part that is none: its reply may still come
      {:reply, {:esdb_part, _}} ->
        {false, {:error, {:corrupt, :record}}}

      {:reply, reply} ->
        {true, parts_read(h, reply, decode, acc)}

      :down ->
        {false, lost(h, :read)}

      :timeout ->
        {false, {:error, :timeout}}
    end
  end

  defp parts_read(_h, {:ok, page, next}, decode, acc) when is_binary(page) and is_list(acc) do
    with {:ok, records} <- Page.records(page, decode) do
      records = if acc == [], do: records, else: Enum.concat(:lists.reverse([records | acc]))
      {:ok, records, next}
    end
  end

  # a part that did not parse; a reply that is no page
  defp parts_read(_h, {:ok, page, _}, _decode, {:error, _} = error) when is_binary(page),
    do: error

  defp parts_read(_h, {:ok, _, _}, _decode, _acc), do: {:error, {:corrupt, :record}}
  defp parts_read(h, reply, _decode, _acc), do: replied(h, reply)

  defp drop_parts(ref) do
    case await_reply(ref, 0, :keep) do
      {:reply, _} -> drop_parts(ref)
      _none -> :ok
    end
  end

  @impl true
  def page_records(_store, {:records, records}), do: {:ok, records}
  def page_records(_store, {:packed, page, decode}), do: Page.records(page, decode)
  def page_records(_store, {:tuples, tuples, decode}), do: Terms.records(tuples, decode)

  @impl true
  # A read may go to the leader this process last wrote at (read_at/2):
  # a process of its own would not read there.
  def read_ahead, do: false

  @impl true
  def stream_info(store, stream_id), do: read_call(store, {:stream_info, stream_id})

  @impl true
  def list_streams(store, after_id, count),
    do: read_call(store, {:list_streams, after_id, count})

  @impl true
  def snapshot_get(store, uuid),
    do: :ex_esdb_backend.translate(:snapshot_get, read_call(store, {:snapshot_get, uuid}))

  @impl true
  def checkpoint_get(store, name),
    do: :ex_esdb_backend.translate(:checkpoint_get, read_call(store, {:checkpoint_get, name}))

  @impl true
  def checkpoint_list(store, after_name, count),
    do: read_call(store, {:checkpoint_list, after_name, count})

  # Subscriptions go through this node's session with the C node
  # (ExESDB.CNode.Session), which sends the NIF backend's messages. It
  # starts where the store's own C node is: after every write a read
  # here would wait for (fresh/2), so a caller's acknowledged write is
  # never pushed to it as one committed later.
  @impl true
  def subscribe(store, pid, source, opts),
    do: fresh(store, fn -> subscribe_here(store, pid, source, opts) end)

  defp subscribe_here(store, pid, source, opts) do
    claim = Keyword.get(opts, :claim)

    with {:ok, session} <- session(store),
         {:ok, member, _} = ok <-
           Session.subscribe(session, pid, source,
             shape: Keyword.get(opts, :shape, :plain),
             credit: Keyword.get(opts, :credit, :infinity),
             format: Keyword.get_lazy(opts, :format, fn -> EventCodec.format(store) end),
             # a persistent subscription's name: one owner per store (in
             # a cluster of C nodes, granted by the leader)
             claim: claim
           ) do
      # a claim taken at a cluster's leader: what was committed before
      # it (an earlier owner's last checkpoint) is read after it
      with true <- claim != nil and map_size(store.handle.members) > 0,
           {:error, _} = error <- barrier(store) do
        Session.unsubscribe(session, member)
        error
      else
        _ -> ok
      end
    end
  end

  @impl true
  def grant(store, member, n) do
    with {:ok, session} <- session(store), do: Session.grant(session, member, n)
  end

  # a session gone took its subscribers with it
  @impl true
  def unsubscribe(store, member) do
    case session(store) do
      {:ok, session} -> Session.unsubscribe(session, member)
      {:error, _} -> {:error, :subscription_not_found}
    end
  end

  defp session(%{handle: h}) do
    case Process.whereis(Connection.session_name(h.store_id)) do
      nil -> {:error, {:unreachable, h.cnode}}
      pid -> {:ok, pid}
    end
  end

  @impl true
  def stats(store), do: read_call(store, {:stats})

  @impl true
  def verify(store), do: call(store.handle, {:verify}, :read, :infinity)

  @impl true
  # dest is a path on the C node's host: made absolute here, the C node's
  # working directory being its own
  def backup(store, dest),
    do: call(store.handle, {:backup, Path.expand(dest)}, :read, :infinity)

  @impl true
  def decode_term(bin), do: Terms.decode(bin)

  @impl true
  # A read is a round trip (~100 us): reading in smaller pieces was not
  # measured to pay, so a lazy read keeps the caller's batch.
  def read_piece, do: :infinity

  @impl true
  def placement(_store), do: :local

  defp read_call(store, request),
    do: fresh(store, fn -> read_at(store, request) end)

  # behind's slot when a write's index is not known (caught_up/3)
  @unknown 0xFFFF_FFFF_FFFF_FFFF

  # Read-your-writes when a write could not wait for the store's own C
  # node (it was down, or behind past the write's deadline; see
  # caught_up/3): a read first waits until that C node applied the write
  # (within the read's time), else answers the error or {:error,
  # :timeout} rather than a state without it. The write's index not
  # known: a barrier first (everything committed before the read).
  defp fresh(%{handle: %Handle{behind: ref} = h} = store, read) when ref != nil do
    case :atomics.get(ref, 1) do
      0 ->
        read.()

      @unknown ->
        deadline = deadline(store.timeout)

        case barrier(store) do
          :ok ->
            # (a write marked meanwhile may be past the barrier: its
            # caller's read passes a barrier of its own, or found it
            # applied)
            :atomics.compare_exchange(ref, 1, @unknown, 0)
            read.()

          error ->
            not_caught_up(h, deadline, read, error)
        end

      index ->
        deadline = deadline(store.timeout)
        info = fn -> call(h, {:cluster_info}, :read, remaining(deadline)) end

        case Cluster.wait_applied(fn -> unfailed(info.()) end, index, deadline) do
          :ok ->
            # (a later write's higher index stays)
            :atomics.compare_exchange(ref, 1, index, 0)
            read.()

          :not_reached ->
            not_caught_up(h, deadline, read, {:error, :timeout})
        end
    end
  end

  defp fresh(_store, read), do: read.()

  # The store's own C node did not reach a write in the read's time: its
  # replica failed (it refuses the read, which goes to the leader,
  # read_at/3), or the read answers `error`.
  defp not_caught_up(h, deadline, read, error) do
    case call(h, {:cluster_info}, :read, remaining(deadline)) do
      {:ok, %{failure: {_, _}}} -> read.()
      {:ok, _} -> error
      e -> e
    end
  end

  # A C node's cluster_info, an error when its replica failed.
  defp unfailed({:ok, %{failure: {_, _}}}), do: {:error, :store_failed}
  defp unfailed(reply), do: reply

  # A read at the store's own C node; with a cluster, one it refuses
  # because its replica failed (its store is stale: it applies nothing
  # more) is read at the leader instead, which applied every write it
  # acknowledged. No leader found: the refusal.
  # (`request` a request, or a function of a C node, its relay's name and
  # a timeout that reads there: read_parts')
  defp read_at(store, request) when is_tuple(request),
    do: read_at(store, &call_at(store.handle, &1, &2, request, :read, &3))

  defp read_at(store, at) do
    h = store.handle

    case at.(h.cnode, h.relay, store.timeout) do
      {:error, {:store_failed, _}} = e when map_size(h.members) > 1 ->
        deadline = deadline(store.timeout)

        case read_leader(h, deadline) do
          nil -> e
          l -> at.(l, Map.fetch!(h.members, l), remaining(deadline))
        end

      reply ->
        reply
    end
  end

  # The leader to read at when the store's own C node failed: where this
  # process's last write was taken, else the one another C node names.
  defp read_leader(h, deadline) do
    case Process.get({__MODULE__, :leader, h.store_id}) do
      l when l != h.cnode and is_map_key(h.members, l) ->
        l

      _ ->
        h.members
        |> Map.delete(h.cnode)
        |> Enum.find_value(fn {node, relay} ->
          case call_at(h, node, relay, {:cluster_info}, :read, ask_wait(deadline)) do
            {:ok, %{leader_node: l}} when l != h.cnode and is_map_key(h.members, l) -> l
            _ -> nil
          end
        end)
    end
  end

  # "Not found" named for what was looked up, as :ex_esdb_backend does.
  defp translate(command, reply), do: :ex_esdb_backend.translate(elem(command, 0), reply)

  # One request: sent from this process with the relay as From and an
  # alias of this process, made by its monitor of the relay, as Ref.
  defp call(%Handle{} = h, request, kind, timeout),
    do: call_at(h, h.cnode, h.relay, request, kind, timeout)

  defp call_at(h, cnode, relay_name, request, kind, timeout) do
    case Process.whereis(relay_name) do
      nil ->
        {:error, {:unreachable, cnode}}

      relay ->
        case send_call(cnode, relay, request, :reply_demonitor) do
          {:ok, ref} when kind == :write ->
            await_write(%{h | cnode: cnode}, relay, ref, timeout, fence_term(h, request))

          {:ok, ref} ->
            await(%{h | cnode: cnode}, relay, ref, kind, timeout)

          unreachable ->
            unreachable
        end
    end
  end

  # {call, From, Ref, Request} to the C node, From the process watched
  # (the relay, or the claim's session) and Ref the alias of a monitor of
  # it: {:ok, ref}, or {:error, {:unreachable, cnode}} when not connected
  # (nothing sent, the monitor gone).
  defp send_call(cnode, from, request, alias_mode) do
    ref = :erlang.monitor(:process, from, alias: alias_mode)

    case Process.send({:esdb, cnode}, {:call, from, ref, request}, [:noconnect]) do
      :ok ->
        {:ok, ref}

      :noconnect ->
        Process.demonitor(ref, [:flush])
        {:error, {:unreachable, cnode}}
    end
  end

  # ---- writes to a cluster of C nodes ----------------------------------

  @backoff_first 10
  @backoff_max 200

  # How often a write waiting on a C node of a cluster asks the others
  # whether leadership moved (ms), as the cluster gateway's @watch.
  @watch 50

  # How long a C node of a cluster is waited for when asked its term
  # before a try, or how far it applied after one (ms): a silent one is
  # passed over (another C node is tried; reads wait instead, fresh/2),
  # not waited for up to the caller's deadline.
  @ask_wait 10 * @watch

  # The puts and deletes, and where their request goes (the index of the
  # last element of the C node request).
  @request_at %{snapshot_put: 6, snapshot_delete: 2, checkpoint_put: 4, checkpoint_delete: 2}
  @requests Map.keys(@request_at)

  # Tries until one answers or the caller's time is out; every wait ends
  # by the deadline. The first try goes where this process's last write
  # was taken (the leader then), else to the store's own C node.
  defp route(store, command, original \\ nil) do
    h = store.handle
    deadline = deadline(store.timeout)
    key = {__MODULE__, :leader, h.store_id}
    first = Process.get(key, h.cnode)
    first = if Map.has_key?(h.members, first), do: first, else: h.cnode
    try = if original, do: command, else: first_try(command)
    attempt(h, original || command, try, first, deadline, @backoff_first, [])
  end

  @doc false
  # A put or delete goes with a request, {Id, Retry} as its last
  # argument (the C node's request form, docs/PROTOCOL.md), the same Id in
  # every try (ExESDB.Backend.Cluster.request/1): the C node's store does
  # not apply a resend again whose first try it applied. Other commands
  # go as they are.
  def first_try(command) do
    case Cluster.request(command) do
      {:request, id, retry, c} -> Tuple.append(c, {id, retry})
      c -> c
    end
  end

  @doc false
  # A try sent again: an append marked as the cluster gateway marks it, a
  # put or delete with its request's Retry set.
  def resubmission(command) when elem(command, 0) in @requests do
    last = tuple_size(command) - 1

    at = Map.fetch!(@request_at, elem(command, 0))

    case elem(command, last) do
      {<<_::binary-size(16)>> = id, _retry} when last == at -> put_elem(command, last, {id, true})
      _ -> command
    end
  end

  def resubmission(command), do: Cluster.resubmission(command)

  # A barrier: a command that changes nothing (deleting a checkpoint of a
  # reserved name no subscription has, as the cluster backend's) through
  # the leader's log; once the leader applied it, everything committed
  # before is applied there.
  @barrier {:checkpoint_delete, "ex_esdb:barrier"}

  @impl true
  # ExESDB.Cluster.barrier/2 on a cluster of C nodes: :ok once the
  # store's own C node (where reads go) applied everything the cluster
  # committed before the call; {:error, :timeout} when the no-op went
  # through but that C node did not reach its index in `timeout`;
  # {:error, :no_quorum} or {:error, {:not_leader, node}} without a
  # leader taking it; {:error, :not_cluster} without `cnode_cluster`.
  @spec barrier(map()) :: :ok | {:error, term()}
  def barrier(%{handle: %Handle{members: m}} = store) when map_size(m) > 0,
    do: CallerRelay.sync(__MODULE__, store.store_id, fn -> route(store, @barrier, :barrier) end)

  def barrier(_store), do: {:error, :not_cluster}

  # Out of time before a try that follows another (a pause woken late on
  # a loaded machine): the last try's reply decides, as the gateway's.
  defp attempt(h, original, command, target, deadline, backoff, [last | _] = replies) do
    if remaining(deadline) == 0,
      do: decide(original, replies, last),
      else: try_at(h, original, command, target, deadline, backoff, replies)
  end

  defp attempt(h, original, command, target, deadline, backoff, []),
    do: try_at(h, original, command, target, deadline, backoff, [])

  defp try_at(h, original, command, target, deadline, backoff, replies) do
    left = remaining(deadline)

    case if(left == 0, do: :out_of_time, else: fenced_call(h, target, command, deadline)) do
      # out of time before this try was sent (its term, asked first, took
      # the rest): the last try's reply decides, as in attempt/7
      :out_of_time when replies != [] ->
        decide(original, replies, hd(replies))

      :out_of_time ->
        tried(h, original, command, target, deadline, backoff, replies, {:error, :timeout})

      reply ->
        tried(h, original, command, target, deadline, backoff, replies, reply)
    end
  end

  defp tried(h, original, command, target, deadline, backoff, replies, reply) do
    replies = [reply | replies]
    next = follow(h, reply, target, backoff)
    if next && forget_term?(reply, target), do: see_term(h, target, 0)

    case next do
      {node, pause} ->
        if more_than?(remaining(deadline), pause) do
          if pause > 0, do: Process.sleep(pause)
          next = resubmission(command)
          attempt(h, original, next, node, deadline, min(backoff * 2, @backoff_max), replies)
        else
          decide(original, replies, reply)
        end

      nil ->
        reached =
          if taken?(command, reply) do
            Process.put({__MODULE__, :leader, h.store_id}, target)
            if target != h.cnode, do: caught_up(h, target, deadline), else: :ok
          end

        decide(original, replies, barrier_reply(original, reply, reached))
    end
  end

  # A try fenced as {in_term, Term, Until, Command} (docs/PROTOCOL.md):
  # the C node applies it only in the raft term it was last seen in and
  # before the caller's deadline. A try held in a connection (its C node
  # stopped, a partition) that arrives after this loop gave it up and
  # resent it marked elsewhere is refused, not applied a second time.
  # :out_of_time: nothing sent, the deadline reached while its term was
  # asked.
  defp fenced_call(h, target, command, deadline) do
    case write_request(h, target, command, deadline) do
      {:ok, request} ->
        relay = Map.fetch!(h.members, target)
        left = remaining(deadline)
        if left == 0, do: :out_of_time, else: call_at(h, target, relay, request, :write, left)

      {:error, :timeout} = e ->
        if remaining(deadline) == 0, do: :out_of_time, else: e

      {:error, _} = e ->
        e
    end
  end

  @doc false
  # The request a try of `command` at `target` is sent as: fenced with the
  # term `target` was last seen in (asked for with {cluster_info} when not
  # known) and the deadline in wall-clock ms less the reply margin, as the
  # cluster gateway's leader checks it (ExESDB.Backend.Deadline): a try
  # that reaches the C node within that margin of its caller's deadline
  # (or past it, the clocks apart by up to the margin) is refused.
  @spec write_request(%Handle{}, node(), tuple(), integer() | :infinity) ::
          {:ok, tuple()} | {:error, term()}
  def write_request(h, target, command, deadline) do
    with {:ok, t} <- term_of(h, target, deadline),
         do: {:ok, {:in_term, t, Deadline.until(remaining(deadline)), command}}
  end

  defp term_of(h, target, deadline) do
    case seen_term(h, target) do
      0 ->
        relay = Map.fetch!(h.members, target)

        case call_at(h, target, relay, {:cluster_info}, :read, ask_wait(deadline)) do
          {:ok, %{term: t}} ->
            see_term(h, target, t)
            {:ok, t}

          {:ok, _} ->
            {:error, {:unreachable, target}}

          # silent within @ask_wait: nothing was sent there, another is
          # tried (as one not connected)
          {:error, :timeout} = e ->
            if remaining(deadline) == 0, do: e, else: {:error, {:unreachable, target}}

          {:error, _} = e ->
            e
        end

      t ->
        {:ok, t}
    end
  end

  # The term a write to `target` was last fenced with (0: none); a
  # handle without the slots remembers none.
  defp seen_term(%Handle{terms: ref, slots: slots}, target) when ref != nil do
    case slots do
      %{^target => slot} -> :atomics.get(ref, slot)
      _ -> 0
    end
  end

  defp seen_term(_h, _target), do: 0

  defp see_term(%Handle{terms: ref, slots: slots}, target, t) when ref != nil do
    case slots do
      %{^target => slot} -> :atomics.put(ref, slot, t)
      _ -> :ok
    end
  end

  defp see_term(_h, _target, _t), do: :ok

  # A C node gone, or refusing in its own name (its term moved on): its
  # term is asked again before the next try there. Kept for one that
  # named another leader or none (a try fenced with an older term is
  # refused there just the same) and for a silent one left for a later
  # leader (a fence it no longer holds is refused): asking a silent C
  # node again would cost every process writing there a wait.
  defp forget_term?({:error, {:moved, _}}, _target), do: false
  defp forget_term?({:error, {:not_leader, target}}, target), do: true
  defp forget_term?({:error, {:not_leader, _other}}, _target), do: false
  defp forget_term?(_reply, _target), do: true

  # the barrier's checkpoint is never there: not_found is its success
  defp taken?(@barrier, {:error, :not_found}), do: true
  defp taken?(_command, {:error, _}), do: false
  defp taken?(_command, _reply), do: true

  # A barrier promises the store's own C node caught up: past the
  # deadline before it did, {:error, :timeout}.
  defp barrier_reply(:barrier, _reply, :ok), do: :ok
  defp barrier_reply(:barrier, {:error, _} = e, nil), do: e
  defp barrier_reply(:barrier, _reply, _not_reached), do: {:error, :timeout}
  defp barrier_reply(_original, reply, _reached), do: reply

  # Read-your-writes, as the gateway's: a write another C node took is
  # waited for until the store's own C node (where reads go) applied as
  # much as that one had when it answered, within the caller's time. Best
  # effort: the write is committed, so past the deadline it is answered
  # anyway, and the reads here wait for it instead (fresh/2). One that
  # does not say how far it applied (gone or out of reach since its
  # answer, silent to the deadline) leaves the index unknown: the reads
  # here pass a barrier first.
  defp caught_up(h, target, deadline) do
    case call_at(
           h,
           target,
           Map.fetch!(h.members, target),
           {:cluster_info},
           :read,
           remaining(deadline)
         ) do
      {:ok, %{applied: index}} ->
        # a silent own C node is not waited for past @ask_wait a time,
        # a failed one not at all (it applies nothing more)
        info = fn -> unfailed(call(h, {:cluster_info}, :read, ask_wait(deadline))) end

        with :not_reached <- Cluster.wait_applied(info, index, deadline),
             do: behind(h.behind, index)

      _ ->
        behind(h.behind, @unknown)
    end
  end

  # The slot raised to `index` (never lowered here); @unknown, above any
  # index, stays until a read's barrier.
  defp behind(ref, index) do
    case :atomics.get(ref, 1) do
      cur when cur >= index ->
        :not_reached

      cur ->
        case :atomics.compare_exchange(ref, 1, cur, index) do
          :ok -> :not_reached
          _ -> behind(ref, index)
        end
    end
  end

  # The gateway's rules (ExESDB.Backend.Cluster.outcome/3) on this loop's
  # replies; out of time with no leader known: :no_quorum.
  defp decide(original, replies, last) do
    final =
      case last do
        {:error, {:not_leader, nil}} -> {:error, :no_quorum}
        # (no C node reached: the gateway's word, as Cluster.leaderless/3)
        {:error, {:unreachable, _}} -> {:error, :no_quorum}
        {:error, {:moved, _}} -> {:error, :outcome_unknown}
        other -> other
      end

    Cluster.outcome(original, replies |> Enum.reverse() |> Enum.map(&sent/1), final)
  end

  # A C node this node was not connected to was sent nothing (the
  # gateway's name for that); a try lost on the way is :outcome_unknown.
  defp sent({:error, {:unreachable, _}}), do: {:error, {:unreachable, :not_connected}}
  # a try left at a silent C node: it may be applied there
  defp sent({:error, {:moved, _}}), do: {:error, :outcome_unknown}
  defp sent(reply), do: reply

  # Where the next try goes and after what pause, or nil: this answer
  # stands. A named leader is tried at once; no leader known, or the
  # tried C node gone or closing: after a pause, the store's own C node,
  # or the next one when that was it.
  # a silent C node left for the leader of a later term (leave/4)
  defp follow(_h, {:error, {:moved, leader}}, _target, _backoff), do: {leader, 0}

  defp follow(h, {:error, {:not_leader, leader}}, target, backoff) do
    if leader != target and Map.has_key?(h.members, leader),
      do: {leader, 0},
      else: {target, backoff}
  end

  defp follow(h, {:error, reason}, target, backoff)
       when reason in [:outcome_unknown, :closed, :store_not_started] or
              elem(reason, 0) == :unreachable,
       do: {other(h, target), backoff}

  # a C node whose replica failed refuses a write before proposing it
  # (never in raft's log): safe anywhere else, the same ids; the others
  # elect a leader when it led. From the store's own C node on at once
  # (the others know the leader); back to it after a pause (a failed
  # leader: they may name it until they elect)
  defp follow(%{cnode: home} = h, {:error, {:store_failed, _}}, target, backoff),
    do: {other(h, target), if(target == home, do: 0, else: backoff)}

  defp follow(_h, _reply, _target, _backoff), do: nil

  defp other(%{cnode: home} = h, home) do
    nodes = Map.keys(h.members) |> Enum.sort()
    i = Enum.find_index(nodes, &(&1 == home))
    Enum.at(nodes, rem(i + 1, length(nodes)))
  end

  defp other(h, _target), do: h.cnode

  # the deadline of a call given `timeout` ms from now
  defp deadline(:infinity), do: :infinity
  defp deadline(timeout), do: now() + timeout

  defp remaining(:infinity), do: :infinity
  defp remaining(deadline), do: max(deadline - now(), 0)

  defp ask_wait(deadline), do: min(remaining(deadline), @ask_wait)

  defp more_than?(:infinity, _ms), do: true
  defp more_than?(left, ms), do: left > ms

  defp now, do: System.monotonic_time(:millisecond)

  @doc false
  # The wait for {Ref, Reply} over distribution: the only one of this
  # backend (writes, their cancels and late replies, ExESDB.CNode.Session
  # and ExESDB.CNode.Connection's hello all wait here; the NIF binding's
  # is :ex_esdb_backend.call/3). Ref is an alias made by a monitor of the
  # relay, or a plain reference when the caller is From itself. Answers
  # the reply, :down when the relay went (the connection dropped with the
  # request in flight), or :timeout. On :timeout the monitor goes with
  # its alias (a later reply reaches no mailbox) unless `on_timeout` is
  # :keep: the caller waits again (a write watched in slices).
  @spec await_reply(reference(), timeout(), :drop | :keep) ::
          {:reply, term()} | :down | :timeout
  def await_reply(ref, timeout, on_timeout \\ :drop) do
    receive do
      {^ref, reply} -> {:reply, reply}
      {:DOWN, ^ref, :process, _, _} -> :down
    after
      timeout ->
        if on_timeout == :keep do
          :timeout
        else
          Process.demonitor(ref, [:flush])

          receive do
            {^ref, reply} -> {:reply, reply}
          after
            0 -> :timeout
          end
        end
    end
  end

  # A write's reply, until the caller's time less the cancel's share
  # (give_up/4). A try fenced in term `term` at a C node of a cluster is
  # waited for in slices: once another C node reports a later term with
  # another leader, it is given up for that leader (watched_move/3, leave/4).
  defp await_write(h, relay, ref, timeout, term) do
    spare = cancel_budget(timeout)
    wait = reply_wait(timeout, spare)
    until = if wait == :infinity, do: :infinity, else: now() + wait
    watch_write(h, relay, ref, until, spare, term)
  end

  defp watch_write(h, relay, ref, until, spare, term) do
    slice = if term, do: min(remaining(until), @watch), else: remaining(until)

    case await_reply(ref, slice, :keep) do
      {:reply, reply} ->
        replied(h, reply)

      :down ->
        lost(h, :write)

      :timeout ->
        cond do
          remaining(until) == 0 -> give_up(h, relay, ref, now() + spare)
          moved = term && watched_move(h, term, until) -> leave(h, relay, ref, moved)
          true -> watch_write(h, relay, ref, until, spare, term)
        end
    end
  end

  defp await(h, _relay, ref, kind, timeout) do
    case await_reply(ref, timeout) do
      {:reply, reply} -> replied(h, reply)
      :down -> lost(h, kind)
      :timeout -> {:error, :timeout}
    end
  end

  # a connection that came up again without its hello: not served
  defp replied(h, {:error, :hello_required}), do: {:error, {:unreachable, h.cnode}}
  defp replied(_h, reply), do: reply

  # A write keeps a slice of the caller's time for its cancel's answer
  # and then a reply the C node says is on its way (as the cluster
  # gateway's leader_budget): a quarter, at most @cancel_wait, at least
  # @cancel_floor (a call may end that much past a timeout under it), so
  # the whole call ends by its deadline.
  @cancel_wait 1_000
  @cancel_floor 20

  defp cancel_budget(:infinity), do: @cancel_wait
  defp cancel_budget(timeout), do: timeout |> div(4) |> min(@cancel_wait) |> max(@cancel_floor)

  defp reply_wait(:infinity, _spare), do: :infinity
  defp reply_wait(timeout, spare), do: max(timeout - spare, 0)

  # A write past its time, as the NIF backend's (:ex_esdb_backend.call/3):
  # withdrawn from the writer queue answers :timeout (never applied);
  # taken by the writer (abandoned), or no answer to the cancel,
  # :outcome_unknown; a reply already sent is the answer. Its alias goes
  # with the monitor: a later reply reaches no mailbox.
  defp give_up(h, relay, ref, deadline) do
    cref = :erlang.monitor(:process, relay, alias: :reply_demonitor)

    answer =
      with :ok <-
             Process.send({:esdb, h.cnode}, {:call, relay, cref, {:cancel, ref}}, [:noconnect]),
           {:reply, cancelled} <- await_reply(cref, remaining(deadline)) do
        case cancelled do
          :ok -> {:error, :timeout}
          :not_queued -> late_reply(h, ref, remaining(deadline))
          _abandoned -> {:error, :outcome_unknown}
        end
      else
        _ ->
          Process.demonitor(cref, [:flush])
          {:error, :outcome_unknown}
      end

    Process.demonitor(ref, [:flush])
    answer
  end

  # (the relay gone meanwhile: the reply may never come, as after `wait`)
  defp late_reply(h, ref, wait) do
    case await_reply(ref, wait) do
      {:reply, reply} -> replied(h, reply)
      _down_or_timeout -> {:error, :outcome_unknown}
    end
  end

  # The term a write request is fenced with, when other C nodes can be
  # asked about a later one; nil: none.
  defp fence_term(%Handle{members: m}, {:in_term, t, _, _}) when map_size(m) > 1, do: t
  defp fence_term(_h, _request), do: nil

  # A move seen by the store's watcher (ExESDB.CNode.Watcher: one asker
  # per store on this node however many writes wait), told that a write
  # waits; without a watcher, the others asked from here.
  defp watched_move(h, term, until) do
    with true <- Watcher.want(h.store_id),
         found when found != :unknown <- Watcher.moved(h.store_id, h.cnode, term, h.members) do
      found
    else
      _ -> moved(h, term, until)
    end
  end

  # Another C node of the cluster leading in `term` or a later one (its
  # own report, or a follower's of it): {leader, its term}, else nil.
  # One leader per term: with another one in `term`, the C node tried
  # (silent, a follower) never takes a try fenced with `term`. Each
  # asked within @watch and the time left.
  defp moved(h, term, until) do
    h.members
    |> Map.delete(h.cnode)
    |> Enum.find_value(fn {node, relay} ->
      case call_at(h, node, relay, {:cluster_info}, :read, min(remaining(until), @watch)) do
        {:ok, %{term: t, leader_node: l}} when t >= term and l not in [nil, h.cnode] ->
          if Map.has_key?(h.members, l), do: {l, t}

        _ ->
          nil
      end
    end)
  end

  # A try given up for a newer leader (try_at/7 sends it again there,
  # marked). It was fenced with its C node's older term: that C node
  # takes it only while still in that term, and a leader of that term
  # commits nothing once a majority voted in a later one, so it is
  # applied at most before the new leader's entries, where the marked
  # resend finds it (docs/PROTOCOL.md, in_term). Its cancel is sent
  # behind it (a stopped C node, running again, withdraws it); the
  # answers to both go nowhere. A reply that came meanwhile stands.
  defp leave(h, relay, ref, {leader, t}) do
    cref = :erlang.alias()
    Process.send({:esdb, h.cnode}, {:call, relay, cref, {:cancel, ref}}, [:noconnect])
    :erlang.unalias(cref)
    Process.demonitor(ref, [:flush])

    case await_reply(ref, 0) do
      {:reply, reply} ->
        replied(h, reply)

      _none ->
        see_term(h, leader, t)
        {:error, {:moved, leader}}
    end
  end

  # The C node went down with the request in flight.
  defp lost(_h, :write), do: {:error, :outcome_unknown}
  defp lost(h, :read), do: {:error, {:unreachable, h.cnode}}
end
