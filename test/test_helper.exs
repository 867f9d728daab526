# The crash test starts other BEAM nodes; this node needs a name for that.
unless Node.alive?() do
  {_, 0} = System.cmd("epmd", ["-daemon"])
  {:ok, _} = Node.start(:"ex_esdb_test_#{System.unique_integer([:positive])}", :shortnames)
end

ExUnit.start()
