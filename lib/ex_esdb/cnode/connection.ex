defmodule ExESDB.CNode.Connection do
  @moduledoc false
  # One per store on the C node backend: keeps this node connected to
  # the store's C node and runs its relay and its subscription session
  # (ExESDB.CNode.Session, named session_name(store)).
  #
  # The relay is the process named relay_name(store) and the From of
  # every request (docs/PROTOCOL.md: the C node replies From ! {Ref,
  # Reply}). A caller's Ref is an alias of the caller made by its monitor
  # of the relay, so the relay hands each reply on to Ref; a caller that
  # gave up has dropped the alias and a late reply goes nowhere (the C
  # node cannot withdraw a request, so without the relay a late reply
  # would land in the caller's mailbox). The relay exists only while the
  # connection is up and said hello: it is killed when the C node goes
  # down (callers waiting get its :DOWN, an error rather than a hang) and
  # a new one starts once the C node answers hello again.
  #
  # The session is started before the relay is named, so a store whose
  # relay exists has its session; it stops by itself when the C node goes
  # (telling its subscribers) and a new one starts with the next relay.
  #
  # A store replicated by a cluster of C nodes (`cnode_cluster`) has one
  # more of these per other C node (`member: true`): a relay named
  # relay_name(store, cnode) and no session (subscriptions stay on the
  # store's own C node); the backend sends writes to whichever leads.
  #
  # Node.connect, not Node.ping: ping is a call to net_kernel, which a C
  # node does not serve.
  use GenServer
  require Logger

  @protocol_version 1
  @hello_ms 5_000
  @retry_ms [20, 50, 100, 200, 500]

  def start_link(args), do: GenServer.start_link(__MODULE__, args, name: name(args))

  def child_spec(args),
    do: %{id: {__MODULE__, name(args)}, start: {__MODULE__, :start_link, [args]}}

  defp name(%{store_id: store, cnode: cnode, member: true}),
    do: :"exesdb_cnode_conn_#{store}@#{cnode}"

  defp name(%{store_id: store}), do: :"exesdb_cnode_conn_#{store}"

  @doc "The registered name of a store's relay."
  @spec relay_name(atom()) :: atom()
  def relay_name(store), do: :"exesdb_cnode_relay_#{store}"

  @doc "The registered name of the relay to another C node of a store's cluster."
  @spec relay_name(atom(), node()) :: atom()
  def relay_name(store, cnode), do: :"exesdb_cnode_relay_#{store}@#{cnode}"

  @doc "The registered name of a store's subscription session."
  @spec session_name(atom()) :: atom()
  def session_name(store), do: :"exesdb_cnode_session_#{store}"

  @doc "Wait up to `ms` for a store's relay (the C node connected); its pid or nil."
  @spec await_relay(atom(), non_neg_integer()) :: pid() | nil
  def await_relay(store, ms) do
    deadline = System.monotonic_time(:millisecond) + ms
    await(relay_name(store), deadline)
  end

  defp await(name, deadline) do
    case Process.whereis(name) do
      nil ->
        if System.monotonic_time(:millisecond) >= deadline do
          nil
        else
          Process.sleep(10)
          await(name, deadline)
        end

      pid ->
        pid
    end
  end

  @impl true
  def init(%{store_id: store, cnode: cnode} = args) do
    Process.flag(:trap_exit, true)
    :ok = :net_kernel.monitor_nodes(true, node_type: :all)
    if cookie = args[:cookie], do: :erlang.set_cookie(cnode, cookie)
    send(self(), :connect)
    member = Map.get(args, :member, false)
    relay_name = if member, do: relay_name(store, cnode), else: relay_name(store)

    {:ok,
     %{
       store: store,
       cnode: cnode,
       member: member,
       relay_name: relay_name,
       relay: nil,
       session: nil,
       # the C nodes of the store's cluster (claims go to the leader)
       cluster: Map.get(args, :cluster, []),
       tries: 0
     }}
  end

  @impl true
  # (a session still running ends by itself, and its end reconnects)
  def handle_info(:connect, %{relay: nil, session: nil} = s) do
    with true <- Node.connect(s.cnode),
         {:ok, @protocol_version} <- hello(s.cnode),
         {:ok, session} <- start_session(s) do
      # replies (pages of events) kept off its heap until handed on
      relay = :erlang.spawn_opt(&relay/0, [:link, message_queue_data: :off_heap])
      Process.register(relay, s.relay_name)
      {:noreply, %{s | relay: relay, session: session, tries: 0}}
    else
      _ ->
        Process.send_after(self(), :connect, Enum.at(@retry_ms, s.tries, List.last(@retry_ms)))
        {:noreply, %{s | tries: s.tries + 1}}
    end
  end

  def handle_info(:connect, s), do: {:noreply, s}

  def handle_info({:nodedown, node, _}, %{cnode: node} = s) do
    {:noreply, drop_relay(s) |> reconnect()}
  end

  def handle_info({:EXIT, relay, _}, %{relay: relay} = s),
    do: {:noreply, reconnect(%{s | relay: nil})}

  # The session ended (the C node went, or it failed): so does this
  # relay, and both start again together.
  def handle_info({:EXIT, session, _}, %{session: session} = s),
    do: {:noreply, %{s | session: nil} |> drop_relay() |> reconnect()}

  def handle_info(_other, s), do: {:noreply, s}

  @impl true
  def terminate(_reason, s) do
    drop_relay(s)
    # its subscribers are told (:subscription_down, :closed)
    if s.session, do: catch_exit(fn -> GenServer.stop(s.session, :shutdown, 5_000) end)
    :ok
  end

  defp catch_exit(fun) do
    fun.()
  catch
    :exit, _ -> :ok
  end

  # A session whose ids follow no earlier one's (an id a subscriber keeps
  # past its session's end names nobody in the next).
  defp start_session(%{member: true}), do: {:ok, nil}

  defp start_session(s) do
    ExESDB.CNode.Session.start_link(
      cnode: s.cnode,
      name: session_name(s.store),
      cluster: s.cluster,
      first_id: System.unique_integer([:positive, :monotonic]) * 4_294_967_296
    )
  end

  defp drop_relay(%{relay: nil} = s), do: s

  defp drop_relay(%{relay: relay} = s) do
    Process.unlink(relay)
    Process.exit(relay, :kill)
    %{s | relay: nil}
  end

  defp reconnect(s) do
    send(self(), :connect)
    s
  end

  # The hello every connection starts with (the C node answers nothing
  # else before it).
  defp hello(cnode) do
    ref = make_ref()
    send({:esdb, cnode}, {:call, self(), ref, {:hello, @protocol_version}})

    case ExESDB.Backend.CNode.await_reply(ref, @hello_ms) do
      {:reply, reply} -> reply
      other -> other
    end
  end

  # Each reply goes on to its Ref, the caller's alias.
  defp relay do
    receive do
      {ref, _reply} = msg when is_reference(ref) -> send(ref, msg)
      _ -> :ok
    end

    relay()
  end
end
