defmodule ExESDB.CNode.Launcher do
  @moduledoc false
  # Runs a store's C node (priv/ex_esdb_cnode) as an OS process through a
  # Port, for `backend: :cnode` without `cnode:` (a C node started
  # elsewhere). The cookie goes to its stdin (never its command line,
  # which `ps` shows), or it reads the 0400 file named by `cnode_cookie`.
  # `--stop-on-eof`: the C node stops when this VM does. It waits for the
  # ready line, and when the C node exits it starts it again (with a
  # growing pause, up to 1 s; never after exit status 3, a replica
  # refusing to come back as the voter it was, or 4, a replica whose
  # store holds another member's raft state; with `cnode_wiped:
  # :rejoin` it comes back as a new member instead, c_src/cnode/rejoin.c):
  # ExESDB.CNode.Connection reconnects. With
  # `raft` (ExESDB.Backend.CNode.raft_args/2) it runs a raft replica,
  # which catches up from the others when started again.
  use GenServer
  require Logger

  @ready_ms 30_000
  @backoff_ms [0, 50, 200, 1000]
  # a C node that ran this long before it exited has its pauses reset
  @settled_ms 10_000
  # the C node's exit status when it refuses to come back as the raft
  # voter it was, its data directory lost (c_src/cnode/wiped_guard.c):
  # starting it again would refuse again; it is not started again
  @was_member 3
  # likewise when its store directory holds another raft member's state
  # (c_src/cnode/cluster.c: another's store, or `cnode_cluster` reordered)
  @not_its_store 4

  def start_link(%{store_id: store} = args),
    do: GenServer.start_link(__MODULE__, args, name: name(store))

  def child_spec(args),
    do: %{id: __MODULE__, start: {__MODULE__, :start_link, [args]}, shutdown: 10_000}

  defp name(store), do: :"exesdb_cnode_launcher_#{store}"

  @doc "The OS pid of a store's running C node, or nil."
  @spec os_pid(atom()) :: non_neg_integer() | nil
  def os_pid(store), do: GenServer.call(name(store), :os_pid)

  @doc """
  The executable: priv/ex_esdb_cnode, or another build of it named by
  the OS environment's ESDB_CNODE_BIN (make asan-cnode's ASan+UBSan one).
  """
  def bin,
    do: System.get_env("ESDB_CNODE_BIN") || Application.app_dir(:ex_esdb, "priv/ex_esdb_cnode")

  @impl true
  def init(args) do
    Process.flag(:trap_exit, true)
    s = Map.merge(args, %{port: nil, os_pid: nil, starts: 0, started_at: 0})

    # the first start is waited for: the store opens only on a C node
    # that is up
    case start(s) do
      {:ok, s} -> {:ok, s}
      {:error, reason} -> {:stop, {:cnode_not_started, reason}}
    end
  end

  @impl true
  def handle_call(:os_pid, _from, s), do: {:reply, s.os_pid, s}

  @impl true
  def handle_info({port, {:data, {:eol, line}}}, %{port: port} = s) do
    Logger.info("ex_esdb C node #{s.cnode}: #{line}")
    {:noreply, s}
  end

  def handle_info({port, {:data, {:noeol, _}}}, %{port: port} = s), do: {:noreply, s}

  def handle_info({port, {:exit_status, status}}, %{port: port} = s)
      when status in [@was_member, @not_its_store] do
    refused(s, status)
    {:noreply, %{s | port: nil, os_pid: nil}}
  end

  def handle_info({port, {:exit_status, status}}, %{port: port} = s) do
    Logger.warning("ex_esdb C node #{s.cnode} exited (#{status}); starting it again")
    send(self(), :restart)
    # one that ran a while is started again at once, as the first time
    ran_ms = System.monotonic_time(:millisecond) - s.started_at
    starts = if ran_ms > @settled_ms, do: 1, else: s.starts
    {:noreply, %{s | port: nil, os_pid: nil, starts: starts}}
  end

  def handle_info(:restart, %{port: nil} = s) do
    Process.sleep(Enum.at(@backoff_ms, s.starts - 1, List.last(@backoff_ms)))

    case start(s) do
      {:ok, s} ->
        {:noreply, s}

      {:error, {:exit_status, status}} when status in [@was_member, @not_its_store] ->
        refused(s, status)
        {:noreply, s}

      {:error, reason} ->
        Logger.error("ex_esdb C node #{s.cnode} did not start: #{inspect(reason)}")
        send(self(), :restart)
        {:noreply, %{s | starts: s.starts + 1}}
    end
  end

  def handle_info(_other, s), do: {:noreply, s}

  defp refused(s, @was_member) do
    Logger.error(
      "ex_esdb C node #{s.cnode} was a raft member and lost its data directory: " <>
        "not started again; remove its old id and add it as a new member (docs/CLUSTER.md)"
    )
  end

  defp refused(s, @not_its_store) do
    Logger.error(
      "ex_esdb C node #{s.cnode}: its store directory holds another raft member's state " <>
        "(another's store, or cnode_cluster reordered): not started again (docs/CLUSTER.md)"
    )
  end

  @impl true
  def terminate(_reason, %{port: port, os_pid: os_pid}) when port != nil do
    # stdin closed: the C node stops (--stop-on-eof) and flushes on its
    # way out; wait for it, so the store's lock is free for whoever
    # opens it next
    Port.close(port)
    wait_gone(os_pid, 100)
  end

  def terminate(_reason, _s), do: :ok

  defp wait_gone(_os_pid, 0), do: :ok

  defp wait_gone(os_pid, n) do
    if File.exists?("/proc/#{os_pid}") do
      Process.sleep(50)
      wait_gone(os_pid, n - 1)
    else
      :ok
    end
  end

  defp start(s) do
    File.mkdir_p!(Path.dirname(s.path))

    args =
      [
        "--name",
        Atom.to_string(s.cnode),
        "--store",
        s.path,
        "--listen",
        s.listen,
        "--durability",
        Atom.to_string(if s.durability == :strict, do: :sync, else: s.durability),
        "--stop-on-eof",
        # its idle limit stays above this node's net tick time
        "--net-ticktime",
        Integer.to_string(net_ticktime())
      ] ++ cookie_args(s.cookie) ++ Map.get(s, :raft, [])

    port =
      Port.open({:spawn_executable, bin()}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        {:line, 4096},
        args: args
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)
    if s.cookie == :node, do: Port.command(port, Atom.to_string(Node.get_cookie()) <> "\n")

    case await_ready(port, System.monotonic_time(:millisecond) + @ready_ms) do
      :ok ->
        {:ok,
         %{
           s
           | port: port,
             os_pid: os_pid,
             starts: s.starts + 1,
             started_at: System.monotonic_time(:millisecond)
         }}

      {:error, {:exit_status, _}} = error ->
        # gone already: its pid may be another process's by now
        error

      error ->
        # killed before its port closes: closing makes it exit
        # (--stop-on-eof), and a kill by pid after that may hit another
        # process given the pid since
        System.cmd("kill", ["-9", "#{os_pid}"], stderr_to_stdout: true)
        catch_port_close(port)
        error
    end
  end

  defp net_ticktime do
    case :net_kernel.get_net_ticktime() do
      {:ongoing_change_to, t} -> t
      t when is_integer(t) -> t
      :ignored -> 60
    end
  end

  defp cookie_args(:node), do: ["--cookie-stdin"]
  defp cookie_args(path) when is_binary(path), do: ["--cookie-file", path]

  defp await_ready(port, deadline) do
    left = max(deadline - System.monotonic_time(:millisecond), 0)

    receive do
      {^port, {:data, {:eol, "ready " <> _}}} ->
        :ok

      {^port, {:data, {_, line}}} ->
        Logger.info("ex_esdb C node: #{line}")
        await_ready(port, deadline)

      {^port, {:exit_status, status}} ->
        {:error, {:exit_status, status}}
    after
      left -> {:error, :no_ready_line}
    end
  end

  defp catch_port_close(port) do
    Port.close(port)
  catch
    _, _ -> :ok
  end
end
