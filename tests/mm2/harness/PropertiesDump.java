import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;

import org.apache.kafka.common.utils.Utils;

/**
 * Prints, for each file named on the command line, the map MirrorMaker 2 builds from it: MirrorMaker.main loads
 * the file with Utils.loadProps (Properties.load of the raw bytes) and Utils.propsToStringMap. One JSON object,
 * {"path": {"key": "value", ...} or {"path": {"error": "..."}}, keys sorted; every non-ASCII character escaped.
 */
public final class PropertiesDump {
    public static void main(String[] args) throws Exception {
        StringBuilder out = new StringBuilder("{");
        for (int i = 0; i < args.length; i++) {
            if (i > 0) out.append(',');
            quote(out, args[i]);
            out.append(':');
            try {
                Properties props = Utils.loadProps(args[i]);
                Map<String, String> sorted = new TreeMap<>(Utils.propsToStringMap(props));
                out.append('{');
                boolean first = true;
                for (Map.Entry<String, String> e : sorted.entrySet()) {
                    if (!first) out.append(',');
                    first = false;
                    quote(out, e.getKey());
                    out.append(':');
                    quote(out, e.getValue());
                }
                out.append('}');
            } catch (Exception e) {
                out.append("{\"error\":");
                quote(out, e.getClass().getSimpleName() + ": " + e.getMessage());
                out.append('}');
            }
        }
        out.append('}');
        System.out.println(out);
    }

    private static void quote(StringBuilder out, String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                out.append('\\').append(c);
            } else if (c < 0x20 || c > 0x7e) {
                out.append(String.format("\\u%04x", (int) c));
            } else {
                out.append(c);
            }
        }
        out.append('"');
    }
}
