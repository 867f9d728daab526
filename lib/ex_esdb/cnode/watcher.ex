defmodule ExESDB.CNode.Watcher do
  @moduledoc false
  # One per store on the C node backend with a cluster of C nodes
  # (`cnode_cluster`): the term and leader each C node of the cluster
  # last reported, for writes waiting on one of them to learn that
  # leadership moved (ExESDB.Backend.CNode.watch_write/6). While any
  # write waits (want/1 within the last @idle ms), it asks every C node
  # for its cluster_info every @watch ms, all at once, and keeps each
  # answer in a public table the writes read (moved/4). However many
  # writes wait, a C node is asked at most once per interval (before:
  # each waiting write asked every other C node itself).
  #
  # A report read from the table may be old; the rule applied to it
  # holds whenever it was made: one leader per term, and terms only grow,
  # so "C node X reported term T >= t with leader L" means the C node
  # tried does not lead in t, now or later.
  use GenServer

  # ms between rounds, and the longest a round waits for answers
  @watch 50
  # polling stops this long after the last want/1
  @idle 4 * @watch

  @doc "The registered name of a store's watcher (and of its table)."
  @spec name(atom()) :: atom()
  def name(store), do: :"exesdb_cnode_watch_#{store}"

  @doc "`members`: each C node of the cluster => the registered name of its relay."
  def start_link(%{store_id: store} = args),
    do: GenServer.start_link(__MODULE__, args, name: name(store))

  def child_spec(args),
    do: %{id: {__MODULE__, args.store_id}, start: {__MODULE__, :start_link, [args]}}

  @doc """
  A write of this node waits on a C node of `store`'s cluster: the
  watcher keeps asking (starting if idle). false when no watcher runs.
  """
  @spec want(atom()) :: boolean()
  def want(store) do
    tab = name(store)
    :ets.insert(tab, {:wanted, now()})

    # (the watcher clears :active before it reads :wanted: one of the
    # two sees the other)
    if :ets.lookup_element(tab, :active, 2) == false, do: send(tab, :wake)
    true
  rescue
    ArgumentError -> false
  end

  @doc """
  Another C node of `store`'s cluster than `target` (a member) that
  reported term `term` or a later one with a leader other than `target`
  (a member): {leader, its term}, else nil. :unknown when no watcher runs.
  """
  @spec moved(atom(), node(), non_neg_integer(), map()) ::
          {node(), non_neg_integer()} | nil | :unknown
  def moved(store, target, term, members) do
    name(store)
    |> :ets.match({{:seen, :"$1"}, :"$2", :"$3"})
    |> Enum.find_value(fn [node, t, l] ->
      if node != target and t >= term and l not in [nil, target] and
           Map.has_key?(members, l),
         do: {l, t}
    end)
  rescue
    ArgumentError -> :unknown
  end

  @impl true
  def init(%{store_id: store, members: members}) do
    tab = :ets.new(name(store), [:named_table, :public, :set, read_concurrency: true])
    :ets.insert(tab, [{:active, false}, {:wanted, 0}])
    {:ok, %{tab: tab, members: members, active: false}}
  end

  @impl true
  def handle_info(:wake, %{active: false} = s) do
    :ets.insert(s.tab, {:active, true})
    send(self(), :round)
    {:noreply, %{s | active: true}}
  end

  def handle_info(:round, %{active: true} = s) do
    started = now()
    ask_all(s)

    if still_wanted?(s) do
      Process.send_after(self(), :round, max(@watch - (now() - started), 0))
      {:noreply, s}
    else
      {:noreply, %{s | active: false}}
    end
  end

  def handle_info(_other, s), do: {:noreply, s}

  # Idle once no write asked within @idle: :active cleared first, then
  # :wanted read again (a want/1 in between either saw :active still
  # true, and is seen here, or saw it false and sent :wake).
  defp still_wanted?(s) do
    if now() - :ets.lookup_element(s.tab, :wanted, 2) < @idle do
      true
    else
      :ets.insert(s.tab, {:active, false})

      if now() - :ets.lookup_element(s.tab, :wanted, 2) < @idle do
        :ets.insert(s.tab, {:active, true})
        true
      else
        false
      end
    end
  end

  # One cluster_info to each C node at once, answers taken for up to
  # @watch ms; a late answer goes nowhere (its alias is dropped).
  defp ask_all(s) do
    asks =
      s.members
      |> Enum.flat_map(fn {node, relay_name} ->
        case Process.whereis(relay_name) do
          nil -> []
          relay -> ask(node, relay)
        end
      end)
      |> Map.new()

    collect(s, asks, now() + @watch)
  end

  defp ask(node, relay) do
    ref = :erlang.monitor(:process, relay, alias: :reply_demonitor)

    case Process.send({:esdb, node}, {:call, relay, ref, {:cluster_info}}, [:noconnect]) do
      :ok ->
        [{ref, node}]

      :noconnect ->
        Process.demonitor(ref, [:flush])
        []
    end
  end

  defp collect(_s, asks, _until) when map_size(asks) == 0, do: :ok

  defp collect(s, asks, until) do
    receive do
      {ref, reply} when is_map_key(asks, ref) ->
        seen(s, asks[ref], reply)
        Process.demonitor(ref, [:flush])
        collect(s, Map.delete(asks, ref), until)

      {:DOWN, ref, :process, _, _} when is_map_key(asks, ref) ->
        collect(s, Map.delete(asks, ref), until)
    after
      max(until - now(), 0) ->
        for {ref, _} <- asks, do: Process.demonitor(ref, [:flush])
        :ok
    end
  end

  defp seen(s, node, {:ok, %{term: t, leader_node: l}}),
    do: :ets.insert(s.tab, {{:seen, node}, t, l})

  defp seen(_s, _node, _reply), do: :ok

  defp now, do: System.monotonic_time(:millisecond)
end
