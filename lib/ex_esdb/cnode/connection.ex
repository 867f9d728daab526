defmodule ExESDB.CNode.Connection do
  @moduledoc false
  # One per store on the C node backend: keeps this node connected to
  # the store's C node and runs its relay.
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
  # Node.connect, not Node.ping: ping is a call to net_kernel, which a C
  # node does not serve.
  use GenServer
  require Logger

  @protocol_version 1
  @hello_ms 5_000
  @retry_ms [20, 50, 100, 200, 500]

  def start_link(%{store_id: store} = args),
    do: GenServer.start_link(__MODULE__, args, name: :"exesdb_cnode_conn_#{store}")

  def child_spec(args), do: %{id: __MODULE__, start: {__MODULE__, :start_link, [args]}}

  @doc "The registered name of a store's relay."
  @spec relay_name(atom()) :: atom()
  def relay_name(store), do: :"exesdb_cnode_relay_#{store}"

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
    {:ok, %{store: store, cnode: cnode, relay: nil, tries: 0}}
  end

  @impl true
  def handle_info(:connect, %{relay: nil} = s) do
    if Node.connect(s.cnode) == true and hello(s.cnode) == {:ok, @protocol_version} do
      relay = spawn_link(&relay/0)
      Process.register(relay, relay_name(s.store))
      {:noreply, %{s | relay: relay, tries: 0}}
    else
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

  def handle_info(_other, s), do: {:noreply, s}

  @impl true
  def terminate(_reason, s), do: drop_relay(s)

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
