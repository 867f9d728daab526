defmodule ExESDB.CNodeRaftAddressTest do
  # A C node replica whose raft address another process listens on stops
  # with a line naming the address and the reason (before: only "raft did
  # not start: Input/output error ()"). A real C node.
  use ExUnit.Case, async: true

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.Test.CNodeCluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"

  @bin CNodeCluster.bin()

  test "a raft address in use: the C node says so and exits" do
    dir = tmp_dir!("ex_esdb_cnra")
    [port] = free_ports(1)
    {:ok, taken} = :gen_tcp.listen(port, ip: {127, 0, 0, 1}, reuseaddr: true)
    address = "127.0.0.1:#{port}"
    name = "cnra#{ExESDB.Test.Unique.id()}@#{CNodeCluster.host()}"

    {cnode, os_pid} =
      CNodeCluster.open(@bin, [
        "--name",
        name,
        "--store",
        Path.join(dir, "store"),
        "--cookie-stdin",
        "--stop-on-eof",
        "--durability",
        "nosync",
        "--raft-id",
        "1",
        "--raft-address",
        address,
        "--raft-member",
        "1,#{address},#{name}"
      ])

    CNodeCluster.kill_at_exit(os_pid)
    {status, out} = outcome(cnode, [])
    assert status not in [0, :ready, :timeout], "exit status #{inspect(status)}; it said:\n#{out}"
    assert out =~ "raft cannot listen on #{address}: Address already in use"
    :gen_tcp.close(taken)
  end

  # {exit status | :ready | :timeout, what it said}
  defp outcome(port, lines) do
    receive do
      {^port, {:data, {:eol, "ready " <> _}}} ->
        {:ready, lines |> Enum.reverse() |> Enum.join("\n")}

      {^port, {:data, {_, l}}} ->
        outcome(port, [l | lines])

      {^port, {:exit_status, s}} ->
        {s, lines |> Enum.reverse() |> Enum.join("\n")}
    after
      30_000 -> {:timeout, lines |> Enum.reverse() |> Enum.join("\n")}
    end
  end
end
