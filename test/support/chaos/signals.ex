defmodule ExESDB.Chaos.Signals do
  @moduledoc false
  # kill -9, SIGSTOP and SIGCONT by OS pid for the chaos harnesses
  # (ExESDB.Chaos.Cluster's peer VMs, ExESDB.Chaos.CNodes' C nodes):
  # ctx.state is an Agent whose os_pids map a node to its OS pid as of
  # its last start.

  @doc "The OS pid of a node (as of its last start)."
  def os_pid(ctx, node), do: Agent.get(ctx.state, &Map.fetch!(&1.os_pids, node))

  @doc """
  kill -9 the node; answers once the signal is sent (the fault is in
  place). Call await_down/1 from the same process before restarting.
  """
  def kill(ctx, node) do
    Node.monitor(node, true)
    {_, 0} = System.cmd("kill", ["-9", "#{os_pid(ctx, node)}"])
    :ok
  end

  @doc "Wait until this VM saw a node killed by kill/2 go."
  def await_down(node) do
    receive do
      {:nodedown, ^node} -> :ok
    after
      30_000 -> raise "#{node} still up after kill -9"
    end
  end

  @doc "SIGSTOP / SIGCONT the node."
  def pause(ctx, node), do: signal(ctx, node, "-STOP")
  def resume(ctx, node), do: signal(ctx, node, "-CONT")

  defp signal(ctx, node, sig) do
    {_, 0} = System.cmd("kill", [sig, "#{os_pid(ctx, node)}"])
    :ok
  end
end
