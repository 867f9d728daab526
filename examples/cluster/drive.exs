# The cluster demo's driver (examples/cluster/run.sh): a fourth BEAM node,
# not a member, that calls the three members over distribution the way an
# operator in one of their shells would. Exits non-zero when a step fails.
[store | nodes] = Enum.map(System.argv(), &String.to_atom/1)

alias ExESDB.{NewEvent, Streams}

defmodule Demo.Util do
  def on(node, m, f, a), do: :erpc.call(node, m, f, a, 30_000)

  def wait_until(what, fun, ms \\ 60_000) do
    deadline = System.monotonic_time(:millisecond) + ms
    loop(what, fun, deadline)
  end

  defp loop(what, fun, deadline) do
    case fun.() do
      v when v not in [nil, false] ->
        v

      _ ->
        if System.monotonic_time(:millisecond) > deadline,
          do: raise("cluster demo: gave up waiting for #{what}"),
          else:
            (
              Process.sleep(100)
              loop(what, fun, deadline)
            )
    end
  end

  def leader(store, nodes) do
    ls =
      for n <- nodes do
        try do
          case :erpc.call(n, ExESDB.Cluster, :leader, [store]) do
            {:ok, l} -> l
            _ -> nil
          end
        catch
          # that node (or its store) is not up yet, or no more
          _, _ -> nil
        end
      end

    l = hd(ls)
    l in nodes and Enum.all?(ls, &(&1 == l)) and l
  end

  def ids(events), do: Enum.map(events, & &1.data)
end

alias Demo.Util, as: U

for n <- nodes, do: U.wait_until("#{n} to be up", fn -> Node.connect(n) end)
leader = U.wait_until("one leader all three agree on", fn -> U.leader(store, nodes) end)
IO.puts("cluster demo: #{inspect(nodes)} formed; the leader is #{leader}")
{:ok, members} = U.on(leader, ExESDB.Cluster, :members, [store])
IO.puts("cluster demo: members (raft id, node, role): #{inspect(members)}")

[n1, n2, n3] = nodes
ev = fn text -> NewEvent.new(event_type: "said", data: text) end

# 1. write on n1 (leader or not: a follower routes it to the leader)
{:ok, 2} =
  U.on(n1, Streams, :append_events, [store, "greetings", :any, [ev.("hello"), ev.("from n1")]])

IO.puts("cluster demo: appended 2 events on #{n1}")

# 2. read on n2: after a barrier the read is linearizable (sees every write
#    acknowledged before it anywhere); a plain read is this replica's
:ok = U.on(n2, ExESDB.Cluster, :barrier, [store])
{:ok, evs} = U.on(n2, Streams, :get_events, [store, "greetings", 1, 10])
["hello", "from n1"] = U.ids(evs)
IO.puts("cluster demo: read on #{n2} after a barrier: #{inspect(U.ids(evs))}")

# 3. write on n3, read at once on n3 (read-your-writes), then on n1
{:ok, 3} = U.on(n3, Streams, :append_events, [store, "greetings", 2, [ev.("and n3")]])
{:ok, evs} = U.on(n3, Streams, :get_events, [store, "greetings", 1, 10])
["hello", "from n1", "and n3"] = U.ids(evs)
IO.puts("cluster demo: appended on #{n3} and read it there at once: #{inspect(U.ids(evs))}")

U.wait_until("#{n1} to apply the write", fn ->
  match?({:ok, 3}, U.on(n1, Streams, :get_version, [store, "greetings"]))
end)

IO.puts("cluster demo: #{n1} has it too")

# 4. stop the leader: the two others elect a new one and take writes
IO.puts("cluster demo: stopping the leader #{leader}")
:erpc.cast(leader, :init, :stop, [])
[a, b] = nodes -- [leader]
new = U.wait_until("a new leader", fn -> U.leader(store, [a, b]) end)
IO.puts("cluster demo: #{new} leads now")
{:ok, 4} = U.on(a, Streams, :append_events, [store, "greetings", 3, [ev.("after failover")]])
:ok = U.on(b, ExESDB.Cluster, :barrier, [store])
{:ok, evs} = U.on(b, Streams, :get_events, [store, "greetings", 1, 10])
["hello", "from n1", "and n3", "after failover"] = U.ids(evs)
IO.puts("cluster demo: written on #{a}, read on #{b}: #{inspect(U.ids(evs))}")
IO.puts("cluster demo: PASS")
