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
      because the C node went down or `store.timeout` passed (the C node
      cannot withdraw a request): it may be applied.
    * `{:error, :timeout}`: a read or lookup got no reply in `store.timeout`.

  A reply that comes after the caller gave up reaches no mailbox (see
  `ExESDB.CNode.Connection`). Subscriptions go through one
  `ExESDB.CNode.Session` per store on this node; when the C node goes
  down its subscribers get `{:subscription_down, {:transient, member},
  :closed}`, and `subscribe/4` answers `{:error, {:unreachable, cnode}}`
  until it is back.
  """
  @behaviour ExESDB.Backend

  alias ExESDB.CNode.{Connection, Session, Terms}
  alias ExESDB.EventCodec

  defmodule Handle do
    @moduledoc false
    # The C node's name and the store whose relay carries its replies.
    defstruct [:cnode, :store_id, :relay]
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
             cookie: options.cnode_cookie
           }}
        ],
        else: []

    launcher ++
      [{Connection, %{store_id: options.store_id, cnode: cnode, cookie: cookie}}]
  end

  def children(_options), do: []

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
    h = %Handle{cnode: cnode, store_id: store, relay: Connection.relay_name(store)}

    case Connection.await_relay(store, Map.get(c, :wait, 30_000)) do
      nil -> {:error, {:unreachable, cnode}}
      _relay -> {:ok, h}
    end
  end

  def open(_path, _opts), do: {:error, {:invalid_option, :cnode}}

  # The C node is stopped by its launcher (or whoever started it).
  @impl true
  def close(_handle), do: :ok

  @impl true
  def limits(h), do: call(h, {:limits}, :read, 30_000)

  @impl true
  def submit(store, command, opts \\ [])

  def submit(%{handle: h} = store, command, opts) do
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

  @impl true
  def read(store, source, from, count, direction, opts \\ []) do
    {_module, decode} = EventCodec.format(store, Keyword.get(opts, :decode, true))

    with {:ok, tuples, next} <-
           call(
             store.handle,
             {:read_records, source, from, count, direction, {ExESDB.EventRecord, decode}},
             :read,
             store.timeout
           ),
         {:ok, records} <- Terms.records(tuples, decode) do
      {:ok, records, next}
    end
  end

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
  # (ExESDB.CNode.Session), which sends the NIF backend's messages.
  @impl true
  def subscribe(store, pid, source, opts) do
    with {:ok, session} <- session(store) do
      Session.subscribe(session, pid, source,
        shape: Keyword.get(opts, :shape, :plain),
        credit: Keyword.get(opts, :credit, :infinity),
        format: EventCodec.format(store)
      )
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

  defp read_call(store, request), do: call(store.handle, request, :read, store.timeout)

  # "Not found" named for what was looked up, as :ex_esdb_backend does.
  defp translate(command, reply), do: :ex_esdb_backend.translate(elem(command, 0), reply)

  # One request: sent from this process with the relay as From and an
  # alias of this process, made by its monitor of the relay, as Ref.
  defp call(%Handle{} = h, request, kind, timeout) do
    case Process.whereis(h.relay) do
      nil ->
        {:error, {:unreachable, h.cnode}}

      relay ->
        ref = :erlang.monitor(:process, relay, alias: :reply_demonitor)

        case Process.send({:esdb, h.cnode}, {:call, relay, ref, request}, [:noconnect]) do
          :ok ->
            await(h, ref, kind, timeout)

          :noconnect ->
            Process.demonitor(ref, [:flush])
            {:error, {:unreachable, h.cnode}}
        end
    end
  end

  @doc false
  # The wait for {Ref, Reply} over distribution: the only one of this
  # backend (ExESDB.CNode.Connection's hello uses it too). Ref is an
  # alias made by a monitor of the relay, or a plain reference when the
  # caller is From itself. Answers the reply, :down when the relay went
  # (the connection dropped with the request in flight), or :timeout.
  @spec await_reply(reference(), timeout()) :: {:reply, term()} | :down | :timeout
  def await_reply(ref, timeout) do
    receive do
      {^ref, reply} -> {:reply, reply}
      {:DOWN, ^ref, :process, _, _} -> :down
    after
      timeout ->
        # the alias goes with the monitor: a later reply is dropped
        Process.demonitor(ref, [:flush])

        receive do
          {^ref, reply} -> {:reply, reply}
        after
          0 -> :timeout
        end
    end
  end

  defp await(h, ref, kind, timeout) do
    case await_reply(ref, timeout) do
      # a connection that came up again without its hello: not served
      {:reply, {:error, :hello_required}} -> {:error, {:unreachable, h.cnode}}
      {:reply, reply} -> reply
      :down -> lost(h, kind)
      :timeout when kind == :write -> {:error, :outcome_unknown}
      :timeout -> {:error, :timeout}
    end
  end

  # The C node went down with the request in flight.
  defp lost(_h, :write), do: {:error, :outcome_unknown}
  defp lost(h, :read), do: {:error, {:unreachable, h.cnode}}
end
