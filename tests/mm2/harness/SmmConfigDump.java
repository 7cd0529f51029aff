/*
 * Differential-test harness: dumps how Apache MirrorMaker 2 (dedicated mode, Kafka 4.3.1) reads mm2.properties files.
 *
 * Every value printed is computed by MM2's / Kafka Connect's own classes (MirrorMakerConfig, MirrorSourceConfig,
 * MirrorCheckpointConfig, MirrorHeartbeatConfig, MirrorSourceConnector, the topic/group/config-property filters,
 * the replication policy, the Connect Worker's config transformer and the herder's connector validation).
 * Nothing here re-implements MM2 logic; this class only wires the pieces together the way MirrorMaker.main,
 * MirrorMaker.addHerder and MirrorHerder.maybeConfigureConnector do, without contacting any Kafka cluster.
 *
 * Usage:
 *   java -cp 'CLASSES:/work/main/.kafka/bench-libs/*' org.apache.kafka.connect.mirror.SmmConfigDump \
 *       --topics TOPICS_FILE --groups GROUPS_FILE --config-properties PROPS_FILE [--scan-plugins] FILE.properties...
 *
 * Prints one JSON document on stdout (keys sorted); anything else the JVM prints goes to stderr.
 * See /work/notes/mm2-config-semantics.md for the meaning of every field.
 */
package org.apache.kafka.connect.mirror;

import org.apache.kafka.common.utils.Time;
import org.apache.kafka.common.utils.Utils;
import org.apache.kafka.connect.connector.Connector;
import org.apache.kafka.connect.connector.policy.AllConnectorClientConfigOverridePolicy;
import org.apache.kafka.connect.connector.policy.ConnectorClientConfigOverridePolicy;
import org.apache.kafka.connect.runtime.ConnectorConfig;
import org.apache.kafka.connect.runtime.ConnectMetrics;
import org.apache.kafka.connect.runtime.SourceConnectorConfig;
import org.apache.kafka.connect.runtime.Worker;
import org.apache.kafka.connect.runtime.WorkerConfig;
import org.apache.kafka.connect.runtime.distributed.DistributedConfig;
import org.apache.kafka.connect.runtime.distributed.DistributedHerder;
import org.apache.kafka.connect.runtime.distributed.WorkerGroupMember;
import org.apache.kafka.connect.runtime.isolation.Plugins;
import org.apache.kafka.connect.runtime.rest.entities.ConfigInfo;
import org.apache.kafka.connect.runtime.rest.RestClient;
import org.apache.kafka.connect.runtime.rest.entities.ConfigInfos;
import org.apache.kafka.connect.storage.ConfigBackingStore;
import org.apache.kafka.connect.storage.MemoryConfigBackingStore;
import org.apache.kafka.connect.storage.MemoryStatusBackingStore;
import org.apache.kafka.connect.storage.StatusBackingStore;
import org.apache.kafka.connect.util.ConnectorTaskId;
import org.apache.kafka.connect.util.FutureCallback;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;

import java.io.IOException;
import java.io.PrintStream;
import java.lang.reflect.Constructor;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

public final class SmmConfigDump {

    /** Stands in for the Kafka cluster id that MirrorMaker.addHerder would look up over the network. */
    static final String HARNESS_CLUSTER_ID = "smm-harness-cluster-id";
    /** Connect's plugin discovery mode used when the file does not choose one (see memo, section "Harness"). */
    static final String FAST_PLUGIN_DISCOVERY = "service_load";
    static final String WORKER_ERROR_PREFIX = "worker: ";

    private SmmConfigDump() {
    }

    /**
     * A DistributedConfig built from MM2's worker props, exactly as MirrorMaker.addHerder builds it, with the
     * cluster id that WorkerConfig.kafkaClusterId() would otherwise look up over the network pre-filled
     * (DistributedConfig is final, so its lazily cached private field is set instead).
     */
    static DistributedConfig offlineDistributedConfig(Map<String, String> props) throws ReflectiveOperationException {
        DistributedConfig config = new DistributedConfig(props);
        Field clusterId = WorkerConfig.class.getDeclaredField("kafkaClusterId");
        clusterId.setAccessible(true);
        clusterId.set(config, HARNESS_CLUSTER_ID);
        return config;
    }

    private static final class Options {
        final List<String> topics;
        final List<String> groups;
        final List<String> configProperties;
        final boolean scanPlugins;
        final List<String> files;

        Options(List<String> topics, List<String> groups, List<String> configProperties, boolean scanPlugins,
                List<String> files) {
            this.topics = topics;
            this.groups = groups;
            this.configProperties = configProperties;
            this.scanPlugins = scanPlugins;
            this.files = files;
        }
    }

    private final Map<String, Plugins> pluginsCache = new HashMap<>();
    private int workerSeq = 0;

    public static void main(String[] args) throws Exception {
        // Keep stdout for the JSON document only: log4j's default console appender (and any stray println)
        // captures System.out lazily, so swap it for stderr before any Kafka class is touched.
        PrintStream jsonOut = System.out;
        System.setOut(System.err);
        int rc = 0;
        try {
            Options options = parseArgs(args);
            SmmConfigDump dumper = new SmmConfigDump();
            Map<String, Object> files = new TreeMap<>();
            for (String file : options.files) {
                files.put(file, dumper.dumpFile(file, options));
            }
            Map<String, Object> doc = new TreeMap<>();
            doc.put("files", files);
            ObjectMapper mapper = new ObjectMapper()
                    .enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS)
                    .enable(SerializationFeature.INDENT_OUTPUT);
            jsonOut.println(mapper.writeValueAsString(doc));
            jsonOut.flush();
        } catch (IllegalArgumentException e) {
            System.err.println("SmmConfigDump: " + e.getMessage());
            rc = 2;
        } catch (Throwable t) {
            t.printStackTrace(System.err);
            rc = 1;
        }
        // Herders/workers own non-daemon executors; nothing was started, so just leave.
        System.err.flush();
        Runtime.getRuntime().halt(rc);
    }

    private static Options parseArgs(String[] args) throws IOException {
        List<String> topics = null;
        List<String> groups = null;
        List<String> configProperties = null;
        boolean scanPlugins = false;
        List<String> files = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            switch (arg) {
                case "--topics":
                    topics = readNames(requireValue(args, ++i, arg));
                    break;
                case "--groups":
                    groups = readNames(requireValue(args, ++i, arg));
                    break;
                case "--config-properties":
                    configProperties = readNames(requireValue(args, ++i, arg));
                    break;
                case "--scan-plugins":
                    scanPlugins = true;
                    break;
                default:
                    if (arg.startsWith("--")) {
                        throw new IllegalArgumentException("unknown option " + arg);
                    }
                    files.add(arg);
            }
        }
        if (topics == null || groups == null || configProperties == null) {
            throw new IllegalArgumentException(
                    "usage: SmmConfigDump --topics FILE --groups FILE --config-properties FILE [--scan-plugins] FILE.properties...");
        }
        return new Options(topics, groups, configProperties, scanPlugins, files);
    }

    private static String requireValue(String[] args, int i, String option) {
        if (i >= args.length) {
            throw new IllegalArgumentException(option + " needs a file name");
        }
        return args[i];
    }

    /** One name per line; a trailing '\r' is dropped and empty lines are skipped (no topic/group/property is ""). */
    private static List<String> readNames(String path) throws IOException {
        List<String> names = new ArrayList<>();
        for (String line : Files.readAllLines(Paths.get(path), StandardCharsets.UTF_8)) {
            if (line.endsWith("\r")) {
                line = line.substring(0, line.length() - 1);
            }
            if (!line.isEmpty()) {
                names.add(line);
            }
        }
        return names;
    }

    static String describe(Throwable t) {
        Throwable e = t;
        while ((e instanceof ExecutionException || e instanceof InvocationTargetException) && e.getCause() != null) {
            e = e.getCause();
        }
        return e.getClass().getSimpleName() + ": " + e.getMessage();
    }

    private static Map<String, Object> errorResult(Throwable t) {
        Map<String, Object> result = new TreeMap<>();
        result.put("error", describe(t));
        return result;
    }

    // ---------------------------------------------------------------- per file

    Map<String, Object> dumpFile(String path, Options options) {
        Map<String, String> config;
        MirrorMakerConfig mm;
        try {
            // Exactly MirrorMaker.main: Utils.loadProps + Utils.propsToStringMap.
            Properties props = Utils.loadProps(path);
            config = Utils.propsToStringMap(props);
            mm = newMirrorMakerConfig(config, options.scanPlugins);
        } catch (Throwable t) {
            return errorResult(t);
        }

        Map<String, Object> result = new TreeMap<>();
        List<String> clusters = new ArrayList<>(mm.clusters());
        result.put("clusters", clusters);
        result.put("clusters_declared", mm.getList(MirrorMakerConfig.CLUSTERS_CONFIG));
        result.put("config_providers", mm.configProviders());
        result.put("enable_internal_rest", mm.enableInternalRest());

        List<SourceAndTarget> pairs;
        try {
            pairs = mm.clusterPairs();
        } catch (Throwable t) {
            return errorResult(t);
        }
        List<String> pairNames = new ArrayList<>();
        for (SourceAndTarget pair : pairs) {
            pairNames.add(pair.toString());
        }
        result.put("pairs", pairNames);
        result.put("mirrormaker_error", mirrorMakerError(mm, pairs));

        Map<String, Object> flows = new TreeMap<>();
        Map<String, Object> workers = new TreeMap<>();
        for (String source : clusters) {
            for (String target : clusters) {
                if (source.equals(target)) {
                    continue;
                }
                SourceAndTarget sat = new SourceAndTarget(source, target);
                try {
                    workers.put(sat.toString(), new TreeMap<>(mm.workerConfig(sat)));
                } catch (Throwable t) {
                    workers.put(sat.toString(), errorResult(t));
                }
                Map<String, Object> flow = new TreeMap<>();
                flow.put("in_cluster_pairs", pairNames.contains(sat.toString()));
                try {
                    dumpFlow(mm, sat, options, flow);
                } catch (Throwable t) {
                    flow.put("error", describe(t));
                }
                flows.put(sat.toString(), flow);
            }
        }
        result.put("flows", flows);
        result.put("worker", workers);
        if (result.get("mirrormaker_error") == null) {
            // MirrorMaker's constructor runs addHerder for every pair in clusterPairs() (iterating a HashSet, as
            // it does); the first worker-config failure aborts the whole process.
            Set<SourceAndTarget> herderPairs = pairs.stream().collect(Collectors.toSet());
            for (SourceAndTarget pair : herderPairs) {
                Object flow = flows.get(pair.toString());
                Object error = flow instanceof Map ? ((Map<?, ?>) flow).get("error") : null;
                if (error instanceof String && ((String) error).startsWith(WORKER_ERROR_PREFIX)) {
                    result.put("mirrormaker_error",
                            pair + ": " + ((String) error).substring(WORKER_ERROR_PREFIX.length()));
                    break;
                }
            }
        }
        return result;
    }

    /**
     * The harness hands Connect's Plugins a non-scanning discovery mode unless the file picks one itself: the
     * default hybrid_warn mode re-scans the whole classpath (~5 s) every time MirrorMakerConfig or a worker is built.
     * The key is only added when it cannot leak into any MM2 map (no cluster alias is "plugin").
     */
    private MirrorMakerConfig newMirrorMakerConfig(Map<String, String> config, boolean scanPlugins) {
        if (scanPlugins || config.containsKey(WorkerConfig.PLUGIN_DISCOVERY_CONFIG)) {
            return new MirrorMakerConfig(config);
        }
        Map<String, String> withDiscovery = new HashMap<>(config);
        withDiscovery.put(WorkerConfig.PLUGIN_DISCOVERY_CONFIG, FAST_PLUGIN_DISCOVERY);
        MirrorMakerConfig mm = new MirrorMakerConfig(withDiscovery);
        for (String alias : mm.clusters()) {
            if (WorkerConfig.PLUGIN_DISCOVERY_CONFIG.startsWith(alias + ".")) {
                return new MirrorMakerConfig(config);
            }
        }
        return mm;
    }

    /**
     * MirrorMaker's constructor refuses a config without flows ("No source->target replication flows.") before it
     * touches the network; it is only invoked in that case, and never when the internal REST server would be bound.
     */
    private static String mirrorMakerError(MirrorMakerConfig mm, List<SourceAndTarget> pairs) {
        if (!pairs.isEmpty() || mm.enableInternalRest()) {
            return null;
        }
        try {
            new MirrorMaker(mm, null, Time.SYSTEM);
            return null;
        } catch (Throwable t) {
            return describe(t);
        }
    }

    private Plugins plugins(Map<String, String> workerProps, boolean scanPlugins) {
        Map<String, String> pluginProps = new HashMap<>();
        String path = workerProps.get(WorkerConfig.PLUGIN_PATH_CONFIG);
        if (path != null) {
            pluginProps.put(WorkerConfig.PLUGIN_PATH_CONFIG, path);
        }
        String discovery = workerProps.get(WorkerConfig.PLUGIN_DISCOVERY_CONFIG);
        if (discovery == null && !scanPlugins) {
            discovery = FAST_PLUGIN_DISCOVERY;
        }
        if (discovery != null) {
            pluginProps.put(WorkerConfig.PLUGIN_DISCOVERY_CONFIG, discovery);
        }
        String key = pluginProps.toString();
        Plugins plugins = pluginsCache.get(key);
        if (plugins == null) {
            plugins = new Plugins(pluginProps);
            pluginsCache.put(key, plugins);
        }
        return plugins;
    }

    // ---------------------------------------------------------------- per flow

    private void dumpFlow(MirrorMakerConfig mm, SourceAndTarget sat, Options options, Map<String, Object> flow)
            throws Exception {
        // Same steps as MirrorMaker.addHerder, minus the cluster-id lookup and the backing stores.
        Map<String, String> workerProps;
        Plugins plugins;
        DistributedConfig workerConfig;
        ConnectorClientConfigOverridePolicy overridePolicy;
        Worker worker;
        try {
            workerProps = mm.workerConfig(sat);
            flow.put("target_exactly_once_source_support",
                    workerProps.get(DistributedConfig.EXACTLY_ONCE_SOURCE_SUPPORT_CONFIG));
            plugins = plugins(workerProps, options.scanPlugins);
            workerConfig = offlineDistributedConfig(workerProps);
            overridePolicy = new AllConnectorClientConfigOverridePolicy();
            overridePolicy.configure(mm.originals());
            String workerId = "smm-harness/" + sat + "/" + (workerSeq++);
            worker = new Worker(workerId, Time.SYSTEM, plugins, workerConfig, null, overridePolicy);
        } catch (Throwable t) {
            // For a pair in clusterPairs() this aborts MirrorMaker's constructor (see "mirrormaker_error").
            flow.put("error", WORKER_ERROR_PREFIX + describe(t));
            return;
        }
        flow.put("worker_exactly_once_source_enabled", workerConfig.exactlyOnceSourceEnabled());
        DistributedHerder herder = validationHerder(workerConfig, worker, worker.workerId(), overridePolicy, sat);

        Map<String, Object> connectorConfigs = new TreeMap<>();
        Map<String, Map<String, String>> transformed = new LinkedHashMap<>();
        List<String> validateErrors = new ArrayList<>();
        for (Class<?> connectorClass : MirrorMaker.CONNECTOR_CLASSES) {
            String simpleName = connectorClass.getSimpleName();
            Map<String, String> raw = mm.connectorBaseConfig(sat, connectorClass);
            connectorConfigs.put(simpleName, new TreeMap<>(raw));
            try {
                FutureCallback<ConfigInfos> cb = new FutureCallback<>();
                herder.validateConnectorConfig(raw, cb, false);
                ConfigInfos infos = cb.get(120, TimeUnit.SECONDS);
                for (ConfigInfo info : infos.configs()) {
                    if (info.configValue() == null) {
                        continue;
                    }
                    for (String msg : info.configValue().errors()) {
                        validateErrors.add(simpleName + ": " + info.configValue().name() + ": " + msg);
                    }
                }
            } catch (Throwable t) {
                // MirrorHerder logs "Failed to configure ..." and never creates the connector.
                validateErrors.add(simpleName + ": " + describe(t));
            }
            // What the worker hands the connector when it starts it (ClusterConfigState -> WorkerConfigTransformer).
            Map<String, String> resolved = section(flow, simpleName,
                    () -> worker.configTransformer().transform(raw));
            if (resolved != null) {
                transformed.put(simpleName, resolved);
            }
        }
        validateErrors.sort(null);
        flow.put("validate_errors", validateErrors);
        flow.put("connector_config", connectorConfigs);

        // Each connector's config as the worker would build it when starting the connector. A failure here is what
        // makes that connector FAILED at start-up (the herder's validation usually reported it already).
        String sourceName = MirrorSourceConnector.class.getSimpleName();
        String checkpointName = MirrorCheckpointConnector.class.getSimpleName();
        String heartbeatName = MirrorHeartbeatConnector.class.getSimpleName();
        MirrorSourceConfig source = !transformed.containsKey(sourceName) ? null
                : section(flow, sourceName, () -> new MirrorSourceConfig(transformed.get(sourceName)));
        MirrorCheckpointConfig checkpoint = !transformed.containsKey(checkpointName) ? null
                : section(flow, checkpointName, () -> new MirrorCheckpointConfig(transformed.get(checkpointName)));
        MirrorHeartbeatConfig heartbeat = !transformed.containsKey(heartbeatName) ? null
                : section(flow, heartbeatName, () -> new MirrorHeartbeatConfig(transformed.get(heartbeatName)));

        if (source != null) {
            flow.put("enabled", source.enabled());
            flow.put("emit_offset_syncs_enabled", source.emitOffsetSyncsEnabled());
            ReplicationPolicy policy = source.replicationPolicy();
            flow.put("replication_policy_class", policy.getClass().getName());
            flow.put("replication_policy_separator", policyField(policy, "separator"));
            flow.put("internal_topic_separator_enabled", policyField(policy, "isInternalTopicSeparatorEnabled"));
            flow.put("offset_syncs_topic", source.offsetSyncsTopic());
            flow.put("offset_syncs_topic_location", source.offsetSyncsTopicLocation());

            // MirrorSourceConnector.start() builds exactly these objects from its config (a bad regex fails there).
            TopicFilter topicFilter = section(flow, "topic.filter", source::topicFilter);
            ConfigPropertyFilter propertyFilter = section(flow, "config.property.filter", source::configPropertyFilter);
            MirrorSourceConnector connector = new MirrorSourceConnector(
                    new SourceAndTarget(source.sourceClusterAlias(), source.targetClusterAlias()),
                    policy, topicFilter, propertyFilter, source.heartbeatsReplicationEnabled());
            if (topicFilter != null) {
                List<String> replicated = new ArrayList<>();
                List<String> filterAccepts = new ArrayList<>();
                Map<String, String> remoteNames = new TreeMap<>();
                for (String topic : options.topics) {
                    if (connector.shouldReplicateTopic(topic)) {
                        replicated.add(topic);
                        remoteNames.put(topic, connector.formatRemoteTopic(topic));
                    }
                    if (topicFilter.shouldReplicateTopic(topic)) {
                        filterAccepts.add(topic);
                    }
                }
                flow.put("topics_replicated", replicated);
                flow.put("topics_remote_names", remoteNames);
                flow.put("topics_filter_accepts", filterAccepts);
            }
            if (propertyFilter != null) {
                List<String> properties = new ArrayList<>();
                for (String property : options.configProperties) {
                    if (connector.shouldReplicateTopicConfigurationProperty(property)) {
                        properties.add(property);
                    }
                }
                flow.put("config_properties_replicated", properties);
                flow.put("config_property_filter_replicates_source_defaults",
                        connector.shouldReplicateSourceDefault("retention.ms"));
            }
            section(flow, "clients", () -> {
                flow.put("clients", clients(source, checkpoint, heartbeat));
                return null;
            });
            // The producer that writes the replicated records (and heartbeats/checkpoints) is the Connect worker's
            // task producer, not one of MirrorConnectorConfig's client maps.
            section(flow, "worker_task_producer", () -> {
                SourceConnectorConfig sourceConnectorConfig = new SourceConnectorConfig(plugins,
                        transformed.get(sourceName), workerConfig.topicCreationEnable());
                flow.put("worker_task_producer", stringMap(workerTaskProducer(workerConfig, sourceConnectorConfig,
                        source.connectorName(), overridePolicy)));
                return null;
            });
        }
        if (checkpoint != null) {
            flow.put("emit_checkpoints_enabled", checkpoint.getBoolean(MirrorCheckpointConfig.EMIT_CHECKPOINTS_ENABLED));
            flow.put("checkpoint_offset_syncs_topic", checkpoint.offsetSyncsTopic());
            flow.put("checkpoints_topic", checkpoint.checkpointsTopic());
            TopicFilter checkpointTopicFilter = section(flow, "checkpoint.topic.filter", checkpoint::topicFilter);
            if (checkpointTopicFilter != null) {
                List<String> checkpointTopics = new ArrayList<>();
                for (String topic : options.topics) {
                    if (checkpointTopicFilter.shouldReplicateTopic(topic)) {
                        checkpointTopics.add(topic);
                    }
                }
                flow.put("checkpoint_topics_filter_accepts", checkpointTopics);
            }
            GroupFilter groupFilter = section(flow, "group.filter", checkpoint::groupFilter);
            if (groupFilter != null) {
                List<String> groups = new ArrayList<>();
                for (String group : options.groups) {
                    if (groupFilter.shouldReplicateGroup(group)) {
                        groups.add(group);
                    }
                }
                flow.put("groups_replicated", groups);
            }
        }
        if (heartbeat != null) {
            flow.put("emit_heartbeats_enabled", heartbeat.getBoolean(MirrorHeartbeatConfig.EMIT_HEARTBEATS_ENABLED));
            flow.put("heartbeats_topic", heartbeat.heartbeatsTopic());
        }
        if (source != null && checkpoint != null && heartbeat != null) {
            section(flow, "settings", () -> {
                flow.put("settings", settings(source, checkpoint, heartbeat));
                return null;
            });
        }
    }

    @FunctionalInterface
    private interface Step<T> {
        T run() throws Exception;
    }

    /**
     * Runs one step of a flow's dump. A failure is recorded under "section_errors" and, for the first one, as the
     * flow's "error"; independent parts of the flow are still reported.
     */
    @SuppressWarnings("unchecked")
    private static <T> T section(Map<String, Object> flow, String name, Step<T> step) {
        try {
            return step.run();
        } catch (Throwable t) {
            flow.putIfAbsent("error", name + ": " + describe(t));
            ((Map<String, Object>) flow.computeIfAbsent("section_errors", k -> new TreeMap<String, Object>()))
                    .put(name, describe(t));
            return null;
        }
    }

    /**
     * The herder MirrorMaker.addHerder would build (MirrorHerder only adds leader-election behaviour on top of
     * DistributedHerder), used solely for AbstractHerder/DistributedHerder.validateConnectorConfig, i.e. what
     * MirrorHerder's putConnectorConfig runs. It gets the real worker and worker config. Its group-membership client
     * (WorkerGroupMember) is a placeholder that is never constructed: building the real one resolves broker host
     * names and sets up SASL/SSL channels, and validation never touches it. Hence DistributedHerder's package-private
     * constructor, which accepts a member, instead of the public one.
     */
    private static DistributedHerder validationHerder(DistributedConfig workerConfig, Worker worker, String workerId,
                                                      ConnectorClientConfigOverridePolicy overridePolicy,
                                                      SourceAndTarget sat) throws ReflectiveOperationException {
        Field theUnsafe = Class.forName("sun.misc.Unsafe").getDeclaredField("theUnsafe");
        theUnsafe.setAccessible(true);
        Object unsafe = theUnsafe.get(null);
        Object member = unsafe.getClass().getMethod("allocateInstance", Class.class)
                .invoke(unsafe, WorkerGroupMember.class);
        Constructor<DistributedHerder> ctor = DistributedHerder.class.getDeclaredConstructor(
                DistributedConfig.class, Worker.class, String.class, String.class, StatusBackingStore.class,
                ConfigBackingStore.class, WorkerGroupMember.class, String.class, RestClient.class,
                ConnectMetrics.class, Time.class, ConnectorClientConfigOverridePolicy.class, List.class,
                ExecutorService.class, AutoCloseable[].class);
        ctor.setAccessible(true);
        return ctor.newInstance(workerConfig, worker, workerId, HARNESS_CLUSTER_ID, new MemoryStatusBackingStore(),
                new MemoryConfigBackingStore(worker.configTransformer()), member, "http://smm-harness:0/", null,
                worker.metrics(), Time.SYSTEM, overridePolicy, List.of(sat.source(), sat.target()), null,
                new AutoCloseable[0]);
    }

    private static Object policyField(ReplicationPolicy policy, String name) throws IllegalAccessException {
        if (!(policy instanceof DefaultReplicationPolicy)) {
            return null;
        }
        Field field;
        try {
            field = DefaultReplicationPolicy.class.getDeclaredField(name);
        } catch (NoSuchFieldException e) {
            return null;
        }
        field.setAccessible(true);
        return field.get(policy);
    }

    private static Map<String, Object> settings(MirrorSourceConfig source, MirrorCheckpointConfig checkpoint,
                                                MirrorHeartbeatConfig heartbeat) {
        Map<String, Object> s = new TreeMap<>();
        // MirrorConnectorConfig (read from the source connector's config; all three share the same map)
        s.put("enabled", source.enabled());
        s.put("name", source.connectorName());
        s.put("source.cluster.alias", source.sourceClusterAlias());
        s.put("target.cluster.alias", source.targetClusterAlias());
        s.put("admin.timeout.ms", source.adminTimeout().toMillis());
        s.put("replication.policy.class", source.getClass(MirrorConnectorConfig.REPLICATION_POLICY_CLASS).getName());
        s.put("replication.policy.separator", source.getString(MirrorConnectorConfig.REPLICATION_POLICY_SEPARATOR));
        s.put("replication.policy.internal.topic.separator.enabled",
                source.getBoolean(MirrorClientConfig.INTERNAL_TOPIC_SEPARATOR_ENABLED));
        s.put("forwarding.admin.class", source.getClass(MirrorConnectorConfig.FORWARDING_ADMIN_CLASS).getName());
        s.put("tasks.max", source.getInt(ConnectorConfig.TASKS_MAX_CONFIG));
        s.put("security.protocol", source.getString("security.protocol"));
        s.put("metric.reporters", source.getList("metric.reporters"));
        // MirrorSourceConfig
        s.put("topics", source.getList(MirrorSourceConfig.TOPICS));
        s.put("topics.exclude", source.getList(MirrorSourceConfig.TOPICS_EXCLUDE));
        s.put("config.properties.exclude", source.getList(MirrorSourceConfig.CONFIG_PROPERTIES_EXCLUDE));
        s.put("topic.filter.class", source.getClass(MirrorConnectorConfig.TOPIC_FILTER_CLASS).getName());
        s.put("config.property.filter.class",
                source.getClass(MirrorSourceConfig.CONFIG_PROPERTY_FILTER_CLASS).getName());
        s.put("consumer.poll.timeout.ms", source.consumerPollTimeout().toMillis());
        s.put("refresh.topics.enabled", source.getBoolean(MirrorSourceConfig.REFRESH_TOPICS_ENABLED));
        s.put("refresh.topics.interval.seconds", seconds(source.refreshTopicsInterval()));
        s.put("sync.topic.configs.enabled", source.getBoolean(MirrorSourceConfig.SYNC_TOPIC_CONFIGS_ENABLED));
        s.put("sync.topic.configs.interval.seconds", seconds(source.syncTopicConfigsInterval()));
        s.put("sync.topic.acls.enabled", source.getBoolean(MirrorSourceConfig.SYNC_TOPIC_ACLS_ENABLED));
        s.put("sync.topic.acls.interval.seconds", seconds(source.syncTopicAclsInterval()));
        s.put("replication.factor", source.replicationFactor());
        s.put("offset-syncs.topic.replication.factor", source.offsetSyncsTopicReplicationFactor());
        s.put("offset.lag.max", source.maxOffsetLag());
        s.put("offset-syncs.topic.location", source.offsetSyncsTopicLocation());
        s.put("emit.offset-syncs.enabled", source.emitOffsetSyncsEnabled());
        s.put("heartbeats.replication.enabled", source.heartbeatsReplicationEnabled());
        s.put("metric.names.formats", source.metricNamesFormats());
        if (source.getClass(MirrorSourceConfig.CONFIG_PROPERTY_FILTER_CLASS) == DefaultConfigPropertyFilter.class) {
            // DefaultConfigPropertyFilter.configure(originals) reads it through this very class.
            s.put("use.defaults.from",
                    new DefaultConfigPropertyFilter.ConfigPropertyFilterConfig(source.originals()).useDefaultsFrom());
        }
        // MirrorCheckpointConfig
        s.put("groups", checkpoint.getList(MirrorCheckpointConfig.GROUPS));
        s.put("groups.exclude", checkpoint.getList(MirrorCheckpointConfig.GROUPS_EXCLUDE));
        s.put("group.filter.class", checkpoint.getClass(MirrorCheckpointConfig.GROUP_FILTER_CLASS).getName());
        s.put("refresh.groups.enabled", checkpoint.getBoolean(MirrorCheckpointConfig.REFRESH_GROUPS_ENABLED));
        s.put("refresh.groups.interval.seconds", seconds(checkpoint.refreshGroupsInterval()));
        s.put("emit.checkpoints.enabled", checkpoint.getBoolean(MirrorCheckpointConfig.EMIT_CHECKPOINTS_ENABLED));
        s.put("emit.checkpoints.interval.seconds", seconds(checkpoint.emitCheckpointsInterval()));
        s.put("sync.group.offsets.enabled", checkpoint.getBoolean(MirrorCheckpointConfig.SYNC_GROUP_OFFSETS_ENABLED));
        s.put("sync.group.offsets.interval.seconds", seconds(checkpoint.syncGroupOffsetsInterval()));
        s.put("checkpoints.topic.replication.factor", checkpoint.checkpointsTopicReplicationFactor());
        s.put("checkpoint.consumer.poll.timeout.ms", checkpoint.consumerPollTimeout().toMillis());
        // MirrorHeartbeatConfig
        s.put("emit.heartbeats.enabled", heartbeat.getBoolean(MirrorHeartbeatConfig.EMIT_HEARTBEATS_ENABLED));
        s.put("emit.heartbeats.interval.seconds", seconds(heartbeat.emitHeartbeatsInterval()));
        s.put("heartbeats.topic.replication.factor", heartbeat.heartbeatsTopicReplicationFactor());
        return s;
    }

    /**
     * The interval getters return Duration.ofSeconds(n) when the feature is enabled and Duration.ofMillis(-1) when
     * it is disabled; Duration.getSeconds() turns the latter into -1 (floor), so no special case is needed.
     */
    private static long seconds(Duration d) {
        return d.getSeconds();
    }

    private static Map<String, Object> clients(MirrorSourceConfig source, MirrorCheckpointConfig checkpoint,
                                               MirrorHeartbeatConfig heartbeat) {
        Map<String, Object> c = new TreeMap<>();
        // MirrorSourceTask: consumer reading the replicated topics.
        c.put("source_consumer", stringMap(source.sourceConsumerConfig("replication-consumer")));
        // MirrorSourceConnector: admin clients for topic listing/creation, config and ACL sync.
        c.put("source_admin", stringMap(source.sourceAdminConfig("replication-source-admin")));
        c.put("target_admin", stringMap(source.targetAdminConfig("replication-target-admin")));
        // Offset-syncs producer for both possible locations (OffsetSyncWriter uses offsetSyncsTopicProducerConfig).
        c.put("source_producer", stringMap(source.sourceProducerConfig(MirrorSourceConfig.OFFSET_SYNCS_SOURCE_PRODUCER_ROLE)));
        c.put("target_producer", stringMap(source.targetProducerConfig(MirrorSourceConfig.OFFSET_SYNCS_TARGET_PRODUCER_ROLE)));
        c.put("offset_syncs_producer", stringMap(source.offsetSyncsTopicProducerConfig()));
        c.put("offset_syncs_admin", stringMap(source.offsetSyncsTopicAdminConfig()));
        if (checkpoint == null || heartbeat == null) {
            return c;
        }
        // MirrorCheckpointTask / CheckpointStore / OffsetSyncStore.
        c.put("target_consumer", stringMap(checkpoint.targetConsumerConfig(MirrorCheckpointConfig.CHECKPOINTS_TARGET_CONSUMER_ROLE)));
        c.put("checkpoint_source_admin", stringMap(checkpoint.sourceAdminConfig("checkpoint-source-admin")));
        c.put("checkpoint_target_admin", stringMap(checkpoint.targetAdminConfig("checkpoint-target-admin")));
        c.put("offset_syncs_consumer", stringMap(checkpoint.offsetSyncsTopicConsumerConfig()));
        c.put("checkpoint_offset_syncs_admin", stringMap(checkpoint.offsetSyncsTopicAdminConfig()));
        // MirrorHeartbeatConnector.
        c.put("heartbeat_target_admin", stringMap(heartbeat.targetAdminConfig("heartbeats-target-admin")));
        return c;
    }

    /**
     * Worker.baseProducerConfigs / exactlyOnceSourceTaskProducerConfigs (package-private statics) for task 0 of the
     * source connector, exactly as Worker builds the task producer. The metrics-context cluster-id entry is the
     * harness's placeholder and is dropped.
     */
    @SuppressWarnings("unchecked")
    private static Map<String, Object> workerTaskProducer(DistributedConfig workerConfig,
                                                          SourceConnectorConfig connConfig, String connectorName,
                                                          ConnectorClientConfigOverridePolicy overridePolicy)
            throws ReflectiveOperationException {
        Map<String, Object> props;
        ConnectorTaskId id = new ConnectorTaskId(connectorName, 0);
        if (workerConfig.exactlyOnceSourceEnabled()) {
            Method m = Worker.class.getDeclaredMethod("exactlyOnceSourceTaskProducerConfigs", ConnectorTaskId.class,
                    WorkerConfig.class, ConnectorConfig.class, Class.class, ConnectorClientConfigOverridePolicy.class,
                    String.class);
            m.setAccessible(true);
            props = (Map<String, Object>) m.invoke(null, id, workerConfig, connConfig, MirrorSourceConnector.class,
                    overridePolicy, HARNESS_CLUSTER_ID);
        } else {
            Method m = Worker.class.getDeclaredMethod("baseProducerConfigs", String.class, String.class,
                    WorkerConfig.class, ConnectorConfig.class, Class.class, ConnectorClientConfigOverridePolicy.class,
                    String.class);
            m.setAccessible(true);
            props = (Map<String, Object>) m.invoke(null, id.connector(), "connector-producer-" + id, workerConfig,
                    connConfig, (Class<? extends Connector>) MirrorSourceConnector.class, overridePolicy,
                    HARNESS_CLUSTER_ID);
        }
        props.remove("metrics.context." + WorkerConfig.CONNECT_KAFKA_CLUSTER_ID);
        return props;
    }

    private static Map<String, String> stringMap(Map<String, ?> map) {
        Map<String, String> out = new TreeMap<>();
        for (Map.Entry<String, ?> e : map.entrySet()) {
            Object v = e.getValue();
            out.put(e.getKey(), v == null ? null : (v instanceof Class ? ((Class<?>) v).getName() : v.toString()));
        }
        return out;
    }
}
