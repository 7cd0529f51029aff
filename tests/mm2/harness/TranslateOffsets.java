import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;

import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.connect.mirror.RemoteClusterUtils;

/**
 * MirrorMaker 2's own client API on a target cluster: RemoteClusterUtils.translateOffsets(properties, remote
 * cluster alias, group, timeout), the call MM2 users make to fail a consumer group over. Arguments: bootstrap
 * servers of the target, the source cluster's alias, the group. Prints {"topic-partition": [offset, "metadata"]}.
 */
public final class TranslateOffsets {
    public static void main(String[] args) throws Exception {
        Map<String, Object> properties = new HashMap<>();
        properties.put("bootstrap.servers", args[0]);
        Map<TopicPartition, OffsetAndMetadata> offsets =
            RemoteClusterUtils.translateOffsets(properties, args[1], args[2], Duration.ofSeconds(60));
        Map<String, OffsetAndMetadata> sorted = new TreeMap<>();
        offsets.forEach((tp, om) -> sorted.put(tp.topic() + "-" + tp.partition(), om));
        StringBuilder out = new StringBuilder("{");
        boolean first = true;
        for (Map.Entry<String, OffsetAndMetadata> e : sorted.entrySet()) {
            if (!first) out.append(',');
            first = false;
            out.append('"').append(e.getKey()).append("\":[").append(e.getValue().offset()).append(",\"")
                .append(e.getValue().metadata().replace("\\", "\\\\").replace("\"", "\\\"")).append("\"]");
        }
        System.out.println(out.append('}'));
    }
}
