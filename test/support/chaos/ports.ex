defmodule ExESDB.Chaos.Ports do
  @moduledoc false
  # A node's fixed ports (distribution and raft) held while it is down,
  # so nothing else on the machine takes them before it starts again.
  # Shared by ExESDB.Chaos.Cluster and ExESDB.Chaos.CNodes.

  @doc "Hold spec's dist and raft ports for node: a listening socket on every address."
  def hold(held, node, spec) do
    socks =
      for port <- [spec.dist_port, spec.raft_port],
          {:ok, sock} <- [:gen_tcp.listen(port, reuseaddr: true)],
          do: sock

    Map.put(held, node, socks)
  end

  @doc "Let node's held ports go (just before it starts and binds them)."
  def release(held, node) do
    {socks, held} = Map.pop(held, node, [])
    Enum.each(socks, &:gen_tcp.close/1)
    held
  end
end
