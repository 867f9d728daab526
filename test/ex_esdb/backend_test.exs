defmodule ExESDB.BackendTest do
  # The boundary to native code: no module of lib/ calls the NIF (the
  # Elixir backend sits on :ex_esdb_backend, as the Erlang API does), the
  # behaviour is documented, and the {Ref, Reply} wait and the naming of
  # core errors are each written once, in :ex_esdb_backend (the C node
  # backend has its own wait, over distribution).
  use ExUnit.Case, async: true

  @root Path.expand("../..", __DIR__)

  defp files_matching(glob, pattern) do
    for file <- Path.wildcard(Path.join(@root, glob)),
        File.read!(file) =~ pattern,
        do: Path.relative_to(file, @root)
  end

  test "ex_esdb_backend is the only module that calls the NIF" do
    assert files_matching("lib/**/*.ex", ":ex_esdb_nif") == []
    assert files_matching("src/*.erl", "ex_esdb_nif:") == ["src/ex_esdb_backend.erl"]
  end

  test "only the backends call :ex_esdb_backend (the cluster's own code through Backend.Cluster)" do
    callers = files_matching("lib/**/*.ex", ~r/:ex_esdb_backend\.\w+\(/)
    assert callers != []
    assert Enum.reject(callers, &String.starts_with?(&1, "lib/ex_esdb/backend/")) == []
  end

  # What differs between backends is asked of the backend (its callbacks);
  # store.ex picks the backend, and ExESDB.Cluster's membership calls are
  # the in-VM cluster backend's alone.
  test "nothing outside the backends branches on which backend a store has" do
    branch = ~r/backend(:| ==| !=) ExESDB\.Backend\.\w+|^\s*ExESDB\.Backend\.\w+ ->/m

    assert files_matching("lib/**/*.ex", branch) --
             files_matching("lib/ex_esdb/backend/*.ex", branch) ==
             ["lib/ex_esdb/cluster.ex", "lib/ex_esdb/store.ex"]

    # (only cluster_store/1: is the store in the in-VM cluster mode)
    assert length(Regex.scan(branch, File.read!(Path.join(@root, "lib/ex_esdb/cluster.ex")))) == 1
  end

  test "one {Ref, Reply} wait in lib/ and src/" do
    wait = ~r/\{\^?[Rr]ef, \w+\} ->/
    waits = files_matching("lib/**/*.ex", wait) ++ files_matching("src/*.erl", wait)
    # and the C node backend's, over distribution, which also watches
    # the connection (a request in flight when it drops)
    assert waits == ["lib/ex_esdb/backend/cnode.ex", "src/ex_esdb_backend.erl"]
  end

  test "within each, the wait is one function: the only receive of {ref, _}" do
    assert ex_waits("lib/ex_esdb/backend/cnode.ex") == [:await_reply]
    assert erl_waits("src/ex_esdb_backend.erl") == [:wait]
  end

  # The functions of an Elixir file with a receive clause {^ref, _}.
  defp ex_waits(file) do
    {:ok, ast} = Code.string_to_quoted(File.read!(Path.join(@root, file)))

    {_, found} =
      Macro.prewalk(ast, [], fn
        {kind, _, [head | _]} = node, acc when kind in [:def, :defp] ->
          {node, if(ex_receives_ref?(node), do: [fun_name(head) | acc], else: acc)}

        node, acc ->
          {node, acc}
      end)

    found |> Enum.uniq() |> Enum.sort()
  end

  defp fun_name({:when, _, [head | _]}), do: fun_name(head)
  defp fun_name({name, _, _}), do: name

  defp ex_receives_ref?(def) do
    {_, found} =
      Macro.prewalk(def, false, fn
        {:receive, _, [[do: clauses] ++ _]} = node, acc ->
          {node, acc or Enum.any?(clauses, &match?({:->, _, [[{{:^, _, _}, _}], _]}, &1))}

        node, acc ->
          {node, acc}
      end)

    found
  end

  # The functions of an Erlang file with a receive clause {Var, _}.
  defp erl_waits(file) do
    {:ok, forms} = :epp.parse_file(String.to_charlist(Path.join(@root, file)), [])

    for {:function, _, name, _, clauses} <- forms, erl_receives_ref?(clauses), uniq: true, do: name
  end

  defp erl_receives_ref?({:receive, _, clauses}), do: Enum.any?(clauses, &ref_clause?/1)
  defp erl_receives_ref?({:receive, _, clauses, _, _}), do: Enum.any?(clauses, &ref_clause?/1)
  defp erl_receives_ref?(t) when is_tuple(t), do: erl_receives_ref?(Tuple.to_list(t))
  defp erl_receives_ref?(l) when is_list(l), do: Enum.any?(l, &erl_receives_ref?/1)
  defp erl_receives_ref?(_), do: false

  defp ref_clause?({:clause, _, [{:tuple, _, [{:var, _, _}, _]}], _, _}), do: true
  defp ref_clause?(_), do: false

  test "every callback is documented and implemented by each backend" do
    Code.ensure_loaded!(ExESDB.Backend.NIF)
    Code.ensure_loaded!(ExESDB.Backend.CNode)
    Code.ensure_loaded!(ExESDB.Backend.Cluster)
    callbacks = ExESDB.Backend.behaviour_info(:callbacks)
    {:docs_v1, _, _, _, _, _, docs} = Code.fetch_docs(ExESDB.Backend)
    documented = for {{:callback, name, arity}, _, _, %{"en" => _}, _} <- docs, do: {name, arity}
    assert Enum.sort(callbacks) == Enum.sort(documented)

    for backend <- [ExESDB.Backend.NIF, ExESDB.Backend.CNode, ExESDB.Backend.Cluster],
        {name, arity} <- callbacks,
        do: assert(function_exported?(backend, name, arity), "#{inspect(backend)}.#{name}/#{arity}")
  end

  describe "the wait (:ex_esdb_backend.call/3)" do
    test "a command refused at once answers its error, waiting for nothing" do
      assert {:error, :closed} =
               :ex_esdb_backend.call(fn _ref -> {:error, :closed} end, 10_000, &flunk/1)
    end

    test "the reply to the command's reference is the answer" do
      submit = fn ref -> send(self(), {make_ref(), :other}) && send(self(), {ref, :done}) && :ok end
      assert :done = :ex_esdb_backend.call(submit, 1_000, fn _ -> flunk("cancelled") end)
    end

    test "past the timeout a withdrawn command is a :timeout" do
      assert {:error, :timeout} = :ex_esdb_backend.call(fn _ -> :ok end, 0, fn _ref -> :ok end)
    end

    test "past the timeout a command already taken is its reply if it was sent, else unknown" do
      # the reply was sent between the timeout and the cancel
      taken_then_answered = fn ref -> send(self(), {ref, {:ok, 1}}) && :not_queued end
      assert {:ok, 1} = :ex_esdb_backend.call(fn _ -> :ok end, 0, taken_then_answered)

      assert {:error, :outcome_unknown} =
               :ex_esdb_backend.call(fn _ -> :ok end, 0, fn _ -> :abandoned end)
    end
  end

  test "core not_found is named for what was looked up; other replies pass" do
    t = &:ex_esdb_backend.translate/2
    assert t.(:snapshot_get, {:error, :not_found}) == {:error, :snapshot_not_found}
    assert t.(:snapshot_delete, {:error, :not_found}) == {:error, :snapshot_not_found}

    for op <- [:checkpoint_get, :checkpoint_delete, :grant, :unsubscribe],
        do: assert(t.(op, {:error, :not_found}) == {:error, :subscription_not_found})

    assert t.(:append, {:error, :stream_deleted}) == {:error, :stream_deleted}
    assert t.(:grant, :ok) == :ok
  end
end
