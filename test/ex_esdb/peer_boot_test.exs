defmodule ExESDB.PeerBootTest do
  # Test support for :peer nodes: a boot failure says its cause, and the
  # names tests make do not clash with another test VM on this machine.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers, only: [free_ports: 1]

  alias ExESDB.Test.{Peer, Unique}

  # such a VM never halts: :peer.start waits out wait_boot
  test "a peer whose distribution port is taken: the raise names the node, the port, and that it is taken" do
    [port] = free_ports(1)
    {:ok, hold} = :gen_tcp.listen(port, reuseaddr: true)
    name = :"pboot#{Unique.id()}"

    args = [
      ~c"-kernel",
      ~c"inet_dist_listen_min",
      ~c"#{port}",
      ~c"-kernel",
      ~c"inet_dist_listen_max",
      ~c"#{port}"
    ]

    e =
      assert_raise RuntimeError, fn -> Peer.start(%{name: name, args: args, wait_boot: 10_000}) end

    :gen_tcp.close(hold)
    assert e.message =~ "peer #{inspect(name)} did not boot"
    assert e.message =~ "distribution port #{port} not bindable now"
    assert e.message =~ "epmd has no #{name}"
  end

  test "a peer whose name another node has: the raise says epmd has it" do
    name = :"pboot#{Unique.id()}"
    {:ok, peer, _} = Peer.start(%{name: name})

    try do
      e = assert_raise RuntimeError, fn -> Peer.start(%{name: name, wait_boot: 10_000}) end
      assert e.message =~ "peer #{inspect(name)} did not boot"
      assert e.message =~ "distribution port picked by the OS"
      assert e.message =~ ~r/epmd has #{name} at port \d+/
    after
      :peer.stop(peer)
    end
  end

  # System.unique_integer/1 alone starts from the same few values in
  # every fresh VM: two runs of one file made the same names
  test "an id carries its VM's OS pid, so another VM's ids differ" do
    args = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])
    {:ok, vm, _} = Peer.start(%{connection: :standard_io, args: args})

    try do
      {id, os_pid} = {:peer.call(vm, Unique, :id, []), :peer.call(vm, System, :pid, [])}
      assert [^os_pid, _] = String.split(id, "_")
      assert [mine, _] = String.split(Unique.id(), "_")
      assert mine == System.pid() and mine != os_pid
    after
      :peer.stop(vm)
    end
  end
end
