defmodule ExESDB.Test.ClusterHelpers do
  @moduledoc false
  # Shared by the cluster tests: free ports for raft and distribution,
  # and a bounded wait.

  @doc """
  n TCP ports free on every address now, below the kernel's ephemeral
  range. A port the OS picks (listen on 0) is an ephemeral one: between
  the pick and its use any outgoing connection on the machine may take
  it as its source port, and a node told to listen there never starts.
  Ports below the range are only ever taken by an explicit bind. Each
  VM walks the range from its own random start, so two picks in one
  run never repeat a port.
  """
  def free_ports(n), do: for(_ <- 1..n, do: next_free_port(0))

  @first_port 10_000

  defp next_free_port(tries) when tries < 2_000 do
    {counter, span} = port_counter()
    port = @first_port + rem(:atomics.add_get(counter, 1, 1), span)

    case :gen_tcp.listen(port, reuseaddr: true) do
      {:ok, s} ->
        :gen_tcp.close(s)
        port

      {:error, _} ->
        next_free_port(tries + 1)
    end
  end

  defp port_counter do
    case :persistent_term.get({__MODULE__, :ports}, nil) do
      nil ->
        # locked on this node only: a lock over the connected nodes
        # waits forever on a peer that is SIGSTOPped
        :global.trans(
          {{__MODULE__, :ports}, self()},
          fn ->
            with nil <- :persistent_term.get({__MODULE__, :ports}, nil) do
              span = ephemeral_low() - @first_port
              counter = :atomics.new(1, signed: false)
              :atomics.put(counter, 1, :rand.uniform(span))
              :persistent_term.put({__MODULE__, :ports}, {counter, span})
              {counter, span}
            end
          end,
          [node()]
        )

      found ->
        found
    end
  end

  # the first port of the kernel's ephemeral range (Linux), 32768 if unknown
  defp ephemeral_low do
    with {:ok, text} <- File.read("/proc/sys/net/ipv4/ip_local_port_range"),
         [low | _] <- String.split(text),
         {low, ""} when low > @first_port + 1_000 <- Integer.parse(low) do
      low
    else
      _ -> 32_768
    end
  end

  @doc """
  A new empty directory <tmp>/<prefix>_<n>, removed at the calling
  test's exit (call from the test process: setup or the test).
  """
  def tmp_dir!(prefix) do
    dir = Path.join(System.tmp_dir!(), "#{prefix}_#{ExESDB.Test.Unique.id()}")
    File.rm_rf!(dir)
    File.mkdir_p!(dir)
    ExUnit.Callbacks.on_exit(fn -> File.rm_rf(dir) end)
    dir
  end

  @doc """
  SIGSTOP the OS process os_pid and wait until every thread of it is
  stopped. kill(2) returns before that: the group stop begins only when
  one woken thread of it runs, and on a loaded machine its other threads
  go on meanwhile (a C node answered an append sent after kill -STOP).
  """
  def pause_os_process!(os_pid) do
    {_, 0} = System.cmd("kill", ["-STOP", "#{os_pid}"])
    wait_until(fn -> stopped?(os_pid) end, 30_000)
    :ok
  end

  defp stopped?(os_pid) do
    case File.ls("/proc/#{os_pid}/task") do
      {:ok, tids} -> Enum.all?(tids, &(thread_state(os_pid, &1) in ["T", "t", nil]))
      {:error, _} -> false
    end
  end

  # a thread's state letter (after the ")" that ends its name), nil once gone
  defp thread_state(os_pid, tid) do
    case File.read("/proc/#{os_pid}/task/#{tid}/stat") do
      {:ok, stat} ->
        stat |> String.split(")") |> List.last() |> String.trim_leading() |> String.first()

      {:error, _} ->
        nil
    end
  end

  @doc "Call fun every 20 ms until it returns a truthy value or ms pass."
  def wait_until(fun, ms \\ 10_000) do
    deadline = System.monotonic_time(:millisecond) + ms
    do_wait(fun, deadline)
  end

  defp do_wait(fun, deadline) do
    case fun.() do
      v when v not in [nil, false] ->
        v

      _ ->
        if System.monotonic_time(:millisecond) > deadline do
          raise "condition not met in time"
        else
          Process.sleep(20)
          do_wait(fun, deadline)
        end
    end
  end

  @doc "Whether this build has cluster support (raft built)."
  def cluster_support?, do: :ex_esdb_backend.cluster_support() == true
end
