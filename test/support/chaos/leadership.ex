defmodule ExESDB.Chaos.Leadership do
  @moduledoc false
  # Leadership as the replicas report it: every node is asked for its
  # (term, leader?) every 20 ms (ExESDB.Cluster.info/1: `leader?` is
  # about `term`), and every (term, node) a node reported leading in is
  # kept. Two nodes reporting leadership in one term is the anomaly raft
  # must never show (issue 14: "never two leaders in one term").
  # Sampled, so a short-lived second leader can be missed, never invented.

  alias ExESDB.Chaos.Cluster

  @every 20

  @doc """
  Start sampling `nodes`; stop/1 answers what was seen. `info` (store,
  node) answers %{leader?: _, term: _} or nil (default: the node's
  ExESDB.Cluster.info/1, 500 ms at most).
  """
  def start(store, nodes, info \\ &Cluster.try_info(&1, &2, 500)) do
    table = :ets.new(:chaos_leadership, [:set, :public])
    parent = self()

    pollers =
      for node <- nodes do
        spawn_link(fn -> poll(store, node, table, parent, info) end)
      end

    %{table: table, pollers: pollers}
  end

  defp poll(store, node, table, parent, info) do
    case info.(store, node) do
      %{leader?: true, term: term} -> :ets.insert(table, {{term, node}, true})
      _ -> :ok
    end

    receive do
      {:stop, ^parent} -> :ok
    after
      @every -> poll(store, node, table, parent, info)
    end
  end

  @doc "Stop every poller (each answers {:stop, from} by exiting); wait until they are gone."
  def stop_pollers(pollers) do
    for p <- pollers do
      ref = Process.monitor(p)
      send(p, {:stop, self()})

      receive do
        {:DOWN, ^ref, _, _, _} -> :ok
      end
    end
  end

  @doc """
  Stop; answers %{leaders: %{term => [node]}, anomalies: [%{kind:
  :two_leaders, term:, nodes:}]}.
  """
  def stop(%{table: table, pollers: pollers}) do
    stop_pollers(pollers)

    leaders =
      table
      |> :ets.tab2list()
      |> Enum.group_by(fn {{term, _}, _} -> term end, fn {{_, node}, _} -> node end)

    :ets.delete(table)

    %{
      leaders: leaders,
      anomalies:
        for(
          {term, nodes} <- Enum.sort(leaders),
          length(nodes) > 1,
          do: %{kind: :two_leaders, term: term, nodes: Enum.sort(nodes)}
        )
    }
  end
end
