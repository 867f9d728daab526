defmodule ExESDB.Test.GatedBackend do
  @moduledoc false
  # ExESDB.Backend.NIF (the real store) with a gate on the submits a test
  # chooses (and tells the test of every submit, `{:submit, command}`):
  # each matching submit is reported to the test as `{:gated,
  # command, opts}` and held until the test calls release/1 (then every
  # later one passes too), then `{:done, command}` once submitted. A held async submit does not hold its caller:
  # a process of its own waits, submits, and passes the reply on as the
  # NIF would. start/2 runs a store's children (ExESDB.System's) with this
  # backend. With `mode: :refuse` a matching async submit is refused in the
  # call instead (`{:error, :overloaded}`, as the NIF answers a full queue;
  # reported as `{:refused, command}`), with `mode: :drop` it is taken and
  # never answered (a C node that died with it in flight; reported as
  # `{:dropped, command}`), until release/1. hold_read_page/1 holds the
  # next read_page until its process is killed (a read-ahead that dies
  # without a result); refuse_subscribe/2 has subscribe answer an error
  # (a claim that cannot be taken: no quorum).
  @behaviour ExESDB.Backend

  alias ExESDB.Backend.NIF

  @doc "Start a store on this backend; `match` picks the commands held."
  def start(_context, match, opts \\ []) do
    store = :"gstore_#{ExESDB.Test.Unique.id()}"
    dir = Path.join(System.tmp_dir!(), "ex_esdb_test/#{store}")
    File.rm_rf!(dir)
    {mode, options} = Keyword.pop(opts, :mode, :hold)
    gate = %{owner: self(), match: match, open: false, mode: mode}
    :persistent_term.put({__MODULE__, store}, gate)

    options =
      ExESDB.Options.resolve([store_id: store, data_dir: dir, durability: :nosync] ++ options)

    options = Map.put(options, :backend_module, __MODULE__)

    children = [
      {ExESDB.Store, options},
      {Registry, keys: :unique, name: ExESDB.Subscriptions.registry(store)},
      {DynamicSupervisor, name: ExESDB.Subscriptions.supervisor(store), strategy: :one_for_one}
    ]

    ExUnit.Callbacks.start_supervised!(%{
      id: store,
      type: :supervisor,
      start: {Supervisor, :start_link, [children, [strategy: :rest_for_one]]}
    })

    ExUnit.Callbacks.on_exit(fn ->
      :persistent_term.erase({__MODULE__, store})
      :persistent_term.erase({__MODULE__, store, :read_page})
      :persistent_term.erase({__MODULE__, store, :subscribe})
      File.rm_rf(dir)
    end)

    %{store: store, data_dir: dir}
  end

  @doc "Let held submits go, and every later one."
  def release(store) do
    gate = :persistent_term.get({__MODULE__, store})
    :persistent_term.put({__MODULE__, store}, %{gate | open: true})
    send(gate.owner, :released)
    :ok
  end

  @doc """
  The next read_page is held, reported as `{:read_page_held, pid}`,
  until its process is killed.
  """
  def hold_read_page(store), do: :persistent_term.put({__MODULE__, store, :read_page}, true)

  @doc "subscribe answers `{:error, reason}` from now on (nil: as the NIF again)."
  def refuse_subscribe(store, reason),
    do: :persistent_term.put({__MODULE__, store, :subscribe}, reason)

  # ---- the gate --------------------------------------------------------

  @impl true
  def submit(store, command, opts \\ []) do
    gate = :persistent_term.get({__MODULE__, store.store_id})
    send(gate.owner, {:submit, command})

    cond do
      gate.open or not gate.match.(command, opts) ->
        NIF.submit(store, command, opts)

      opts[:async] == true and gate.mode == :refuse ->
        send(gate.owner, {:refused, command})
        {:error, :overloaded}

      opts[:async] == true and gate.mode == :drop ->
        send(gate.owner, {:dropped, command})
        :ok

      opts[:async] ->
        caller = self()
        ref = Keyword.fetch!(opts, :ref)

        spawn(fn ->
          hold(store, gate, command, opts)
          reply = NIF.submit(store, command, Keyword.delete(opts, :async))
          send(gate.owner, {:done, command})
          send(caller, {ref, reply})
        end)

        :ok

      true ->
        hold(store, gate, command, opts)
        reply = NIF.submit(store, command, opts)
        send(gate.owner, {:done, command})
        reply
    end
  end

  # Report the submit and wait until the gate opens.
  defp hold(store, gate, command, opts) do
    send(gate.owner, {:gated, command, opts})
    wait_open(store.store_id)
  end

  defp wait_open(store_id) do
    unless :persistent_term.get({__MODULE__, store_id}).open do
      Process.sleep(5)
      wait_open(store_id)
    end
  end

  # ---- the rest is the NIF's --------------------------------------------

  @impl true
  defdelegate open(path, opts), to: NIF
  @impl true
  defdelegate close(handle), to: NIF
  @impl true
  defdelegate limits(handle), to: NIF
  @impl true
  defdelegate read(store, source, from, count, direction, opts \\ []), to: NIF

  @impl true
  def read_page(store, source, from, count, direction, opts \\ []) do
    if :persistent_term.get({__MODULE__, store.store_id, :read_page}, false) do
      :persistent_term.put({__MODULE__, store.store_id, :read_page}, false)
      send(:persistent_term.get({__MODULE__, store.store_id}).owner, {:read_page_held, self()})
      receive do: (:never -> :ok)
    end

    NIF.read_page(store, source, from, count, direction, opts)
  end

  @impl true
  defdelegate page_records(store, page), to: NIF

  @impl true
  defdelegate read_ahead(), to: NIF
  @impl true
  defdelegate stream_info(store, id), to: NIF
  @impl true
  defdelegate list_streams(store, after_id, count), to: NIF
  @impl true
  defdelegate snapshot_get(store, uuid), to: NIF
  @impl true
  defdelegate checkpoint_get(store, name), to: NIF
  @impl true
  defdelegate checkpoint_list(store, after_name, count), to: NIF
  @impl true
  def subscribe(store, pid, source, opts) do
    case :persistent_term.get({__MODULE__, store.store_id, :subscribe}, nil) do
      nil -> NIF.subscribe(store, pid, source, opts)
      reason -> {:error, reason}
    end
  end

  @impl true
  defdelegate grant(store, member, n), to: NIF
  @impl true
  defdelegate unsubscribe(store, member), to: NIF
  @impl true
  defdelegate stats(store), to: NIF
  @impl true
  defdelegate verify(store), to: NIF
  @impl true
  defdelegate backup(store, dest), to: NIF
  @impl true
  defdelegate decode_term(bin), to: NIF
  @impl true
  defdelegate read_piece(), to: NIF
  @impl true
  defdelegate placement(store), to: NIF
  @impl true
  defdelegate barrier(store), to: NIF
end
