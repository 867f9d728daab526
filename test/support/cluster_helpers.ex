defmodule ExESDB.Test.ClusterHelpers do
  @moduledoc false
  # Shared by the cluster tests: free loopback ports for raft and a
  # bounded wait.

  @doc "n TCP ports free on loopback now (the OS picks them)."
  def free_ports(n) do
    socks =
      for _ <- 1..n do
        {:ok, s} = :gen_tcp.listen(0, ip: {127, 0, 0, 1}, reuseaddr: true)
        s
      end

    ports = for s <- socks, do: elem(:inet.port(s), 1)
    Enum.each(socks, &:gen_tcp.close/1)
    ports
  end

  @doc """
  A new empty directory <tmp>/<prefix>_<n>, removed at the calling
  test's exit (call from the test process: setup or the test).
  """
  def tmp_dir!(prefix) do
    dir = Path.join(System.tmp_dir!(), "#{prefix}_#{System.unique_integer([:positive])}")
    File.rm_rf!(dir)
    File.mkdir_p!(dir)
    ExUnit.Callbacks.on_exit(fn -> File.rm_rf(dir) end)
    dir
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
