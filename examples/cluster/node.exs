# One node of the cluster demo (examples/cluster/run.sh, `make
# cluster-demo`): the store as the EX_ESDB_* variables say (db_type,
# store_id, data_dir, seed_nodes, raft_addresses), running until the VM
# stops. The same as putting {ExESDB.System, []} in an application's
# supervision tree with those variables set.
{:ok, sup} = ExESDB.System.start_link([])
# `mix run FILE` evaluates in a process that ends with the file: the
# system must not go with it.
Process.unlink(sup)
IO.puts("#{node()}: store #{System.fetch_env!("EX_ESDB_STORE_ID")} started")
