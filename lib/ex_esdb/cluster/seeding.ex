defmodule ExESDB.Cluster.Seeding do
  @moduledoc """
  How a cluster replica with no raft state, or one that fell behind the
  entries raft keeps, gets a store: a copy of a member's store, moved
  over BEAM distribution, installed while this node's replica is closed.

  ## Members are recorded

  Once a member has a leader and is in the configuration, it records
  itself in the replicated state: the checkpoint `"ex_esdb:member:<node>"`
  with its raft id (names starting `ex_esdb:` are the store's own; they
  are not subscriptions and are not listed as such). Every replica thus
  knows which node each member id is (`ExESDB.Cluster.member_nodes/1`).

  ## A data directory without raft state

  A node whose store directory has no raft state (`raft/node_id`) asks
  the members running the store (the seeds and the nodes connected) what
  they know before it opens:

    * one of them records this node as a member: this node lost its data
      directory (a wiped disk). It must not take part as the voter it was:
      that voter may have voted in this term and acknowledged entries it
      no longer has, and coming back with neither could elect a leader
      without acknowledged writes. It comes back as a new member: a fresh
      id, its store a copy of a member's, raft started without a
      configuration (it cannot vote or stand for election); then it asks
      the leader to remove its old id and add the new one (spare, then
      voter once raft caught it up). Until a leader exists (a quorum of
      the old configuration) it waits. Restarted later, it opens under
      the id in `raft/node_id`, not its seed list position, and finishes
      the replace if it was killed before it went through (its record
      still names the old id).
    * a node with `join: true` (not a seed) starts from a copy too, so
      raft need only send it what was committed after the copy.
    * members run the store and none records this seed: it writes the
      seed list's configuration, the one they bootstrapped with, and
      joins them through it; with `initial_cluster: :existing` it comes
      back as a new member in place of its seed id instead.
    * no member runs the store: the first formation, a seed writes the
      seed list's configuration (`ExESDB.Cluster`) when its
      `initial_cluster` lets it (`:auto`: every other seed answered, its
      VM up; `:new`: a majority of the seeds, itself included, answered
      that they start with no raft state under `:new`; `:existing`:
      never). A seed
      that cannot be reached or does not answer within 5 s may be a
      running member that records this node (a wiped seed cut off, or
      one slow under load, would otherwise come back as its old voter).
      It asks again every second, logging why it waits, without limit.
      While it waits it answers those asking that it is forming, and
      under which `initial_cluster` (`forming_status/1`).
    * a copy installed at the start (fetched, then the node killed before
      it opened) with no raft state yet: asked again as above, not opened
      as the seed id.
    * a node up without the store answers whether its disk holds the
      store's raft state (`state/1`: where the store last ran in that VM,
      or where its config and `EX_ESDB_*` variables put it). One that
      does holds off a seed with no raft state in every `initial_cluster`
      mode: the cluster exists, and this seed may be a member that lost
      its data. It waits (logging which nodes and what to do) until one
      of them runs the store, then comes back as above.

  Not covered: a VM up without the store that cannot tell where its
  directory is (it did not run the store since it booted, and its
  options came only from a child spec) answers as one without raft
  state, so with `:auto` a wiped seed restarted while such VMs are up and
  none runs the store takes it for a first formation and bootstraps as a
  seed (`:existing` does not; `:new` does only when a majority of seeds
  answer that they have no raft state: docs/CLUSTER.md); bring the
  others' stores up first. A seed wiped between its first start and its
  record being applied (the first heartbeats of a new cluster) is not
  recognised either.

  ## Raft state that cannot be read

  A replica whose raft log or metadata cannot be read (a corrupt segment,
  or raft 0.22.1 refusing a log that ends before its last snapshot,
  canonical/raft #199), or whose store fails its checks at open, cannot
  take part as the member it was either: its store opens with
  `{:corrupt, _}`, and when a running member records this
  node its raft state and store are set aside (`raft.unusable-<time>`,
  `data.mdb.unusable-<time>`) and it comes back as a lost data directory
  does. With no member running, the error stands and nothing is moved.

  ## A replica behind raft's snapshots

  Raft's snapshots here are markers: when the leader no longer has the
  entries a follower needs, it sends a marker saying "the store at index
  N". A store behind N waits for a copy (`needs_copy` in
  `ExESDB.Cluster.info/1`, the C replica's `esdb_replica_get_needs_copy`):
  raft goes on (the node keeps its log, term and vote, and acknowledges
  entries), its writer holds the entries after N. This node fetches a
  copy from the member that applied most (`data.mdb.incoming` beside the
  store) and restores it under the open store
  (`ExESDB.Backend.Cluster.install_copy/2`, `esdb_store_restore`); the
  writer goes on from the copy's index. Reads meanwhile see the store as
  it was; writes are refused, and the C replica keeps it from leading
  while another voter can (it campaigns late, and hands leadership on
  when it leads all the same: docs/CLUSTER.md, "Store copies"). The same
  happens when raft's snapshot passes a new member's copy, or at a
  restart while the copy was not in yet.

  ## The copy

  The member makes a consistent compacted copy of its store
  (`ExESDB.backup/2`, LMDB's `mdb_env_copyfd2` with compaction, while its
  writes go on) beside its store directory and the receiver reads it in
  1 MiB pieces (`:erpc`), writes it to a `.tmp` file, flushes it and
  renames it. The member removes its copy when the receiver is done
  (also when its fetch failed), goes away, or reads nothing for two
  minutes; it keeps at most one copy per receiver (asking again replaces
  the earlier copy), and a failed fetch is retried after a pause. Neither node's raft loop waits for any of it.
  """

  import Bitwise
  require Logger

  alias ExESDB.Backend.Cluster, as: Backend

  @prefix "ex_esdb:member:"
  @chunk 1 <<< 20
  @copy "data.mdb.copy"
  @incoming "data.mdb.incoming"
  @ask_timeout 5_000

  # ---- before the store opens -----------------------------------------------

  @doc false
  # The configuration the replica opens with (ExESDB.Store, before the
  # backend opens): a copy waiting is installed; a store without raft
  # state asks the members first (see the moduledoc).
  @spec prepare(map(), String.t(), map()) :: map()
  def prepare(options, path, config) do
    remember_path(Map.get(options, :store_id), path)

    cond do
      File.exists?(Path.join(path, @copy)) ->
        install(path)

        # a copy fetched for a come-back or a join, the node killed before
        # it opened: with no raft state yet it asks again (it must not
        # open as its seed id with the seed configuration)
        if File.exists?(Path.join([path, "raft", "node_id"])),
          do: stored_id(path, config),
          else: pristine(options, path, config)

      File.exists?(Path.join([path, "raft", "node_id"])) ->
        stored_id(path, config)

      true ->
        pristine(options, path, config)
    end
  end

  # A member that came back under a new id keeps it in raft/node_id: it
  # opens as that id, not as its seed list position (the replica refuses
  # a node_id that is not the configured id). Without a configuration,
  # as when it came back: raft's state holds it. An unreadable node_id is
  # the replica's to report.
  defp stored_id(path, config) do
    with {:ok, text} <- File.read(Path.join([path, "raft", "node_id"])),
         {id, _} when id > 0 and id != config.id <- Integer.parse(String.trim(text)) do
      %{config | id: id, nif: %{config.nif | id: id, members: []}}
    else
      _ -> config
    end
  end

  @doc false
  # The replica at `path` could not start (its raft state unreadable):
  # when a running member records this node, set its raft state and store
  # aside (`raft.unusable-<time>`, `data.mdb.unusable-<time>`) so that the
  # next open comes back as a lost data directory does. `:no` otherwise
  # (the error stands: with no member to copy from, nothing is moved).
  @spec set_aside(map(), String.t()) :: :ok | :no
  def set_aside(options, path) do
    me = Atom.to_string(node())

    if Enum.any?(running(ask(options)), fn {_n, a} -> Map.has_key?(a.recorded, me) end) do
      stamp = System.os_time(:second)
      Logger.warning("ExESDB: #{me}'s raft state in #{path} cannot be read: setting it aside")
      File.rename!(Path.join(path, "raft"), Path.join(path, "raft.unusable-#{stamp}"))
      data = Path.join(path, "data.mdb")
      if File.exists?(data), do: File.rename!(data, "#{data}.unusable-#{stamp}")
      File.rm(Path.join(path, "lock.mdb"))
      :ok
    else
      :no
    end
  end

  defp install(path) do
    Logger.info("ExESDB: installing the copy of a member's store in #{path}")
    File.rm(Path.join(path, "lock.mdb"))
    File.rename!(Path.join(path, @copy), Path.join(path, "data.mdb"))
  end

  defp pristine(options, path, config) do
    seed? = config.nif.members != []

    case forming(options, seed?) do
      [] ->
        config

      answers ->
        me = Atom.to_string(node())
        former = Enum.find_value(answers, fn {_n, a} -> Map.get(a.recorded, me) end)
        {from, _} = Enum.max_by(answers, fn {_n, a} -> a.applied end)

        # initial_cluster: :existing never bootstraps: a seed no member
        # records comes back as a new member replacing its seed id (never
        # started, or wiped before its record was applied: either way
        # safe), instead of writing the seed configuration
        {former, was} =
          if former == nil and seed? and Map.get(options, :initial_cluster) == :existing,
            do: {config.id, "seed #{config.id} (initial_cluster: :existing)"},
            else: {former, "member #{former} of the cluster"}

        taken = taken(answers, config)

        cond do
          former != nil ->
            id = ExESDB.Cluster.fresh_id(MapSet.put(taken, former))

            Logger.warning(
              "ExESDB: #{me} was #{was} and has no raft state: it comes back as member " <>
                "#{id} from a copy of #{from}'s store"
            )

            fetch(from, options.store_id, path, options.file_mode)
            install(path)
            nif = %{config.nif | id: id, members: []}
            Map.merge(config, %{id: id, nif: nif, replace: former})

          not seed? ->
            id = ExESDB.Cluster.fresh_id(taken)
            fetch(from, options.store_id, path, options.file_mode)
            install(path)
            %{config | id: id, nif: %{config.nif | id: id}}

          true ->
            config
        end
    end
  end

  # The ids a new one must not be: the seeds', and those the running
  # members have in their configuration or records.
  @doc false
  def taken(answers, config) do
    running =
      for {_n, a} <- answers, id <- Map.values(a.recorded) ++ Map.get(a, :members, []), do: id

    MapSet.new(Map.keys(config.nodes) ++ running)
  end

  # The members running the store, for a node without raft state ([]: a
  # seed bootstraps, a joiner waits to be added). With none running, a
  # seed waits until its `initial_cluster` rule lets it bootstrap
  # (not_yet/3), asking again every @retry ms, or raises after
  # `options.seed_wait` ms (default: no limit). Meanwhile it answers those
  # asking that it is forming: a seed starting with no raft state.
  @retry 1_000

  defp forming(options, false), do: running(ask(options))

  defp forming(options, true) do
    key = forming_key(options.store_id)
    rounds = :counters.new(1, [])
    :persistent_term.put(key, {self(), rounds, Map.get(options, :initial_cluster, :auto)})

    try do
      pristine_answers(options, rounds, 1)
    after
      :persistent_term.erase(key)
    end
  end

  defp pristine_answers(options, rounds, tries) do
    answers = ask(options)
    :counters.add(rounds, 1, 1)
    mode = Map.get(options, :initial_cluster, :auto)

    case running(answers) do
      [] ->
        held = state_held(answers)

        case held || not_yet(mode, options, answers) do
          nil ->
            []

          why ->
            if waited_out?(tries * @retry, Map.get(options, :seed_wait, :infinity)),
              do: raise("ExESDB: #{node()} has no raft state and does not bootstrap: #{why}")

            if rem(tries, 10) == 1,
              do:
                Logger.warning(
                  "ExESDB: #{node()} has no raft state and #{waits(held, mode)}: #{why}"
                )

            Process.sleep(@retry)
            pristine_answers(options, rounds, tries + 1)
        end

      running ->
        running
    end
  end

  # What a seed with no raft state waits for: one whose cluster exists
  # (others hold its raft state, or `initial_cluster: :existing`) never
  # bootstraps; it joins, or comes back from a copy, once a member runs
  # the store.
  defp waits(held, mode) when held != nil or mode == :existing,
    do: "waits until a member runs the store (it does not bootstrap)"

  defp waits(_held, _mode), do: "waits before it bootstraps"

  # Nodes that answer without running the store but hold its raft state
  # on their disks (`:has_raft_state`, state/1): the cluster existed, and
  # this seed, with no raft state, may be a member that lost its data. In
  # any `initial_cluster` mode it waits until one of them runs the store
  # (then it joins, or comes back as a new member from a copy): writing
  # the seed configuration would make it the voter it was, with an empty
  # log and no memory of its vote.
  defp state_held(answers) do
    held = for {n, :has_raft_state} <- answers, do: n

    if held != [],
      do:
        "#{inspect(held)} hold this store's raft state but do not run it: the cluster " <>
          "exists and this node, with none, may be a member that lost its data; start " <>
          "the store on them (this node then joins, or comes back as a new member from " <>
          "a copy), or remove their raft state if that cluster is to be discarded"
  end

  # Why a seed with no raft state, no member running the store, may not
  # write the seed configuration yet (nil: it may). Its answers are
  # `:unreachable`, `:not_running` (the VM up, not running the store, its
  # disk unknown) or `{:forming, mode}` (a seed starting with no raft
  # state, waiting under `initial_cluster: mode`; nil: an older release).
  #
  # :auto: every other seed answered. A seed silent may be a running
  # member that records this one (a wiped seed cut off, or slow).
  def not_yet(:auto, options, answers) do
    others = options.seed_nodes -- [node()]
    silent = for {n, :unreachable} <- answers, n in others, do: n

    if silent != [],
      do:
        "seeds #{inspect(silent)} do not answer (this node may be a member they record: " <>
          "initial_cluster: :auto waits for every seed)"
  end

  # :new (the operator says no cluster existed): a majority of the seeds,
  # this one included, say they start with no raft state under :new. A
  # seed whose VM answers without running the store is not counted (it
  # may hold raft state on its disk), nor one waiting under :auto or
  # :existing (a wiped seed of a cluster that exists, restarted as it
  # should be), and one running the store makes this seed join instead.
  @doc false
  def not_yet(:new, options, answers) do
    seeds = Enum.uniq(options.seed_nodes)
    forming = Enum.uniq([node() | for({n, {:forming, :new}} <- answers, n in seeds, do: n)])

    if length(forming) * 2 <= length(seeds),
      do:
        "initial_cluster: :new needs a majority of #{length(seeds)} seeds starting with " <>
          "no raft state, and only #{inspect(forming)} are"
  end

  def not_yet(:existing, _options, _answers),
    do: "initial_cluster: :existing and no member runs the store (it only joins)"

  defp forming_key(store_id), do: {__MODULE__, :forming, store_id}

  @doc false
  # Whether this VM has a seed of `store_id` waiting to form: {:forming,
  # rounds asked so far} or :no.
  @spec forming_status(atom()) :: {:forming, non_neg_integer()} | :no
  def forming_status(store_id) do
    case forming_seed(store_id) do
      {rounds, _mode} -> {:forming, :counters.get(rounds, 1)}
      nil -> :no
    end
  end

  # (its rounds counter and initial_cluster mode, or nil)
  defp forming_seed(store_id) do
    case :persistent_term.get(forming_key(store_id), nil) do
      {pid, rounds, mode} -> if Process.alive?(pid), do: {rounds, mode}
      nil -> nil
    end
  end

  defp waited_out?(_ms, :infinity), do: false
  defp waited_out?(ms, limit), do: ms > limit

  defp running(answers), do: for({n, {:running, state}} <- answers, do: {n, state})

  # What the nodes asked answer: [{node, {:running, state} | :not_running
  # | :has_raft_state | {:forming, mode} | :unreachable}] (:unreachable
  # also when it did not answer in time).
  defp ask(options) do
    nodes = ((options.seed_nodes ++ Node.list()) -- [node()]) |> Enum.uniq()

    nodes
    |> Task.async_stream(&ask_one(&1, options.store_id),
      timeout: @ask_timeout + 1000,
      on_timeout: :kill_task
    )
    |> Enum.zip(nodes)
    |> Enum.map(fn
      {{:ok, answer}, n} -> {n, answer}
      {_, n} -> {n, :unreachable}
    end)
  end

  defp ask_one(n, store_id) do
    if Node.connect(n) == true do
      case :erpc.call(n, __MODULE__, :state, [store_id], @ask_timeout) do
        {:ok, state} -> {:running, state}
        {:error, :not_running} -> :not_running
        {:error, {:forming, mode}} -> {:forming, mode}
        {:error, :has_raft_state} -> :has_raft_state
        # (a seed on an older release: its mode unknown)
        {:error, :forming} -> {:forming, nil}
        _ -> :unreachable
      end
    else
      :unreachable
    end
  catch
    _, _ -> :unreachable
  end

  @doc false
  # On a member, for a node asking: this replica's applied index and the
  # members it has recorded (node name => raft id). Not running it:
  # {:error, {:forming, mode}} for a seed starting with no raft state,
  # {:error, :has_raft_state} when this node's disk holds the store's raft
  # state (where it last ran here, or where its config and EX_ESDB_*
  # variables put it), else {:error, :not_running}.
  def state(store_id) do
    with {:ok, s} <- ExESDB.Store.fetch(store_id),
         true <- s.backend == Backend,
         {:ok, %{failure: nil} = i} <- Backend.replica_info(s.handle.ref),
         {:ok, recorded} <- recorded(s),
         {:ok, members} <- Backend.replica_members(s.handle.ref) do
      ids = for {id, _address, _role} <- members, do: id
      {:ok, %{applied: i.applied, leader?: i.leader, recorded: recorded, members: ids}}
    else
      _ ->
        case forming_seed(store_id) do
          {_rounds, mode} ->
            {:error, {:forming, mode}}

          nil ->
            if raft_state_here?(store_id),
              do: {:error, :has_raft_state},
              else: {:error, :not_running}
        end
    end
  end

  # Where a store ran on this VM (kept after it stops: a VM up without
  # its store still says whether its disk holds raft state).
  defp path_key(store_id), do: {__MODULE__, :path, store_id}

  defp remember_path(nil, _path), do: :ok

  defp remember_path(store_id, path) do
    if :persistent_term.get(path_key(store_id), nil) != path,
      do: :persistent_term.put(path_key(store_id), path)
  end

  defp raft_state_here?(store_id) do
    [:persistent_term.get(path_key(store_id), nil), configured_path(store_id)]
    |> Enum.any?(&(&1 != nil and File.exists?(Path.join([&1, "raft", "node_id"]))))
  end

  # The store's directory by this VM's config and EX_ESDB_* variables
  # (nil when they do not resolve).
  defp configured_path(store_id) do
    ExESDB.Options.store_path(ExESDB.Options.resolve(store_id: store_id, db_type: :single))
  rescue
    _ -> nil
  end

  @doc false
  # The members recorded in this replica: %{node name (string) => id}.
  def recorded(s), do: recorded(s, @prefix, %{})

  defp recorded(s, after_name, acc) do
    case Backend.replica_checkpoints(s.handle.ref, after_name, 100) do
      {:ok, page} ->
        mine = Enum.take_while(page, fn {name, _, _, _} -> String.starts_with?(name, @prefix) end)
        acc = Enum.into(mine, acc, fn {@prefix <> n, id, _, _} -> {n, id} end)

        if length(mine) == 100,
          do: recorded(s, elem(List.last(mine), 0), acc),
          else: {:ok, acc}

      e ->
        e
    end
  end

  @doc false
  # The node a record names, when an atom names it already; else nil
  # (records are data: they must not make atoms).
  @spec node_named(String.t()) :: node() | nil
  def node_named(name) do
    String.to_existing_atom(name)
  rescue
    ArgumentError -> nil
  end

  # ---- the copy ------------------------------------------------------------------

  @doc false
  # Fetch a copy of `from`'s store into path/name; its path. Raises when
  # the copy cannot be made or moved; the member's copy is let go either
  # way.
  def fetch(from, store_id, path, file_mode, name \\ @copy) do
    File.mkdir_p!(path)
    tmp = Path.join(path, name <> ".tmp")

    {:ok, holder, src, size} = :erpc.call(from, __MODULE__, :copy_open, [store_id, self()], 600_000)

    try do
      {:ok, fd} = :file.open(tmp, [:write, :raw, :binary])

      try do
        :ok = pull(from, holder, src, fd, 0, size)
        :ok = :file.sync(fd)
      after
        :file.close(fd)
      end
    after
      send(holder, :done)
    end

    File.chmod!(tmp, file_mode)
    dest = Path.join(path, name)
    File.rename!(tmp, dest)
    Logger.info("ExESDB: copied #{size} bytes of #{from}'s store into #{path}")
    dest
  end

  defp pull(_from, _holder, _src, _fd, offset, size) when offset >= size, do: :ok

  defp pull(from, holder, src, fd, offset, size) do
    {:ok, bin} = :erpc.call(from, __MODULE__, :copy_read, [holder, src, offset, @chunk], 60_000)
    :ok = :file.write(fd, bin)
    pull(from, holder, src, fd, offset + byte_size(bin), size)
  end

  @doc false
  # On a member: a consistent compacted copy of the store beside its
  # directory, kept until `requester` is done or gone, or reads nothing
  # for @idle ms. One copy per requester: a requester asking again (its
  # last fetch failed) replaces its earlier copy, so retries cannot pile
  # copies up on the member's disk.
  def copy_open(store_id, requester) do
    with {:ok, s} <- ExESDB.Store.fetch(store_id) do
      prefix = "#{s.path}.copy-#{:erlang.phash2(requester, 1 <<< 32)}-"
      drop_copies(prefix)
      dir = prefix <> Integer.to_string(System.unique_integer([:positive]))

      with :ok <- s.backend.backup(s, dir),
           src = Path.join(dir, "data.mdb"),
           {:ok, %{size: size}} <- File.stat(src) do
        holder = spawn(fn -> hold(requester, dir) end)
        # the copy's directory names its holder: the next copy_open for
        # this requester finds it there
        File.write(Path.join(dir, "holder"), :erlang.term_to_binary(holder))
        {:ok, holder, src, size}
      else
        e ->
          File.rm_rf(dir)
          e
      end
    end
  end

  # Copies made for one requester: each holder told to let go, waited
  # for; a copy whose holder is gone (this VM restarted) removed.
  defp drop_copies(prefix) do
    for dir <- Path.wildcard(prefix <> "*") do
      with {:ok, bin} <- File.read(Path.join(dir, "holder")),
           pid when is_pid(pid) <- :erlang.binary_to_term(bin, [:safe]),
           true <- node(pid) == node() and Process.alive?(pid) do
        ref = Process.monitor(pid)
        send(pid, :done)
        receive do: ({:DOWN, ^ref, _, _, _} -> :ok)
      else
        _ -> File.rm_rf(dir)
      end
    end

    :ok
  rescue
    _ -> :ok
  end

  # A copy nobody has read from for this long is let go (the requester
  # stuck or cut off): it would otherwise hold the member's disk.
  @idle 120_000

  defp hold(requester, dir) do
    ref = Process.monitor(requester)
    held(ref)
    File.rm_rf(dir)
  end

  defp held(ref) do
    receive do
      :read -> held(ref)
      :done -> :ok
      {:DOWN, ^ref, _, _, _} -> :ok
    after
      @idle -> :ok
    end
  end

  @doc false
  def copy_read(holder, src, offset, len) do
    send(holder, :read)
    {:ok, fd} = :file.open(src, [:read, :raw, :binary])

    try do
      case :file.pread(fd, offset, len) do
        {:ok, bin} -> {:ok, bin}
        :eof -> {:error, :eof}
        e -> e
      end
    after
      :file.close(fd)
    end
  end

  # ---- while the store is open: the keeper -------------------------------------

  @doc false
  # A process beside an open cluster store (started by its backend's
  # open, ends with the store's process `owner`): records this member,
  # finishes a come-back (`replace`: the old id to swap for ours) and
  # fetches a copy when the replica needs one.
  def keep(owner, store_id, ref, config, path, file_mode) do
    spawn(fn ->
      mref = Process.monitor(owner)

      keeper(%{
        owner: owner,
        mref: mref,
        store_id: store_id,
        ref: ref,
        id: config.nif.id,
        address: config.nif.address,
        replace: Map.get(config, :replace) || unfinished(ref, config.nif.id),
        reseed: nil,
        seeds: Map.values(Map.get(config, :nodes, %{})),
        recorded: false,
        path: path,
        file_mode: file_mode
      })
    end)
  end

  # A come-back killed before its replace went through (the record of
  # this node in its store still names another id): the old id to swap
  # for ours, again (each step of the replace is skipped when done).
  defp unfinished(ref, id) do
    case Backend.replica_checkpoint(ref, @prefix <> Atom.to_string(node())) do
      {:ok, {_, old, _, _}} when old != id -> old
      _ -> nil
    end
  end

  @tick 100

  defp keeper(k) do
    receive do
      {:DOWN, ref, _, _, _} when ref == k.mref ->
        if is_pid(k.reseed), do: Process.exit(k.reseed, :kill)
        :ok

      # a copy still short of the snapshot, or no member to ask: again, later
      {:DOWN, _, :process, pid, reason} when pid == k.reseed ->
        again = if reason == :normal, do: nil, else: {:after, now() + 500}
        keeper(%{k | reseed: again})
    after
      @tick ->
        case Backend.replica_info(k.ref) do
          {:ok, i} -> keeper(step(k, i))
          _ -> :ok
        end
    end
  end

  # Waiting for a copy, this replica refuses writes; the C replica hands
  # leadership on when it leads and campaigns late meanwhile
  # (c_src/replica/replica.c, hand_over/defer_campaign). The copy is
  # fetched by a process of its own, so the keeper goes on ticking while a
  # long fetch runs.
  defp step(k, %{needs_copy: true}), do: reseeding(k)

  defp step(k, %{leader_id: 0}), do: k

  defp step(%{replace: old} = k, _i) when old != nil do
    with {:ok, s} <- store(k),
         :ok <- Backend.on_leader(s, :replace, [old, k.id, k.address]) do
      Logger.info("ExESDB: member #{old} replaced by #{k.id} (#{node()})")
      %{k | replace: nil}
    else
      _ -> k
    end
  end

  defp step(%{recorded: false} = k, _i) do
    with {:ok, s} <- store(k),
         {:ok, ms} <- Backend.replica_members(k.ref),
         true <- List.keymember?(ms, k.id, 0),
         :ok <- record(s, k.id) do
      %{k | recorded: true}
    else
      _ -> k
    end
  end

  defp step(k, _i), do: k

  defp reseeding(%{reseed: pid} = k) when is_pid(pid), do: k

  defp reseeding(%{reseed: {:after, t}} = k) do
    if now() < t, do: k, else: reseeding(%{k | reseed: nil})
  end

  defp reseeding(k) do
    {pid, _} = spawn_monitor(fn -> if reseed(k) != :ok, do: exit(:again) end)
    %{k | reseed: pid}
  end

  defp now, do: System.monotonic_time(:millisecond)

  defp store(k) do
    case ExESDB.Store.fetch(k.store_id) do
      {:ok, %{handle: %{ref: ref}} = s} when ref == k.ref -> {:ok, s}
      _ -> :error
    end
  end

  # This member's record, written unless this replica has it already.
  defp record(s, id) do
    name = @prefix <> Atom.to_string(node())

    case Backend.replica_checkpoint(s.handle.ref, name) do
      {:ok, {_, ^id, _, _}} ->
        :ok

      _ ->
        definition = :erlang.term_to_binary(node())

        case Backend.submit(s, {:checkpoint_put, name, id, definition}) do
          :ok -> :ok
          e -> e
        end
    end
  end

  # Raft's snapshot passed this replica's store: it goes on in raft and
  # holds the entries after the snapshot until its store is replaced by a
  # copy holding the snapshot's index. Fetch one from the member that
  # applied most and restore it under the open store.
  defp reseed(k) do
    Logger.warning("ExESDB: #{node()}'s store is behind raft's snapshot: fetching a copy")

    case running(ask(%{seed_nodes: k.seeds, store_id: k.store_id})) do
      [] ->
        :no_member

      answers ->
        {from, _} = Enum.max_by(answers, fn {_n, a} -> a.applied end)
        file = fetch(from, k.store_id, k.path, k.file_mode, @incoming)

        try do
          Backend.install_copy(k.ref, file)
        after
          File.rm(file)
        end
    end
  catch
    # an error, so that the keeper waits before it asks again
    kind, reason ->
      Logger.warning("ExESDB: fetching a copy failed: #{inspect({kind, reason})}")
      {:error, {kind, reason}}
  end
end
